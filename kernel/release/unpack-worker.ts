// The unpack worker: scans one release archive and, if the main thread then asks, extracts its
// release folder. A worker thread of its own, started for each archive and gone after it, so that
// inflating (node-tar inflates synchronously) never holds up the kernel's main thread, and a
// bomb inflates here while the services keep being answered.
//
// Bundled into the deployed tarball as lib/unpack-worker.mjs beside lib/kernel.mjs (build.ts);
// in development it is bundled on first use (bundler.ts). The protocol is in unpack.ts.

import { open } from 'node:fs/promises';
import { parentPort, workerData } from 'node:worker_threads';
import { TheseusError, errorMessage } from '../common/errors.ts';
import { extractScanned, scanArchive } from './tarball.ts';
import type { UnpackCommand, UnpackReply, UnpackRequest } from './unpack.ts';

const port = parentPort!;
const request = workerData as UnpackRequest;
const send = (reply: UnpackReply) => port.postMessage(reply);

try {
  // One open file for both reads: what is extracted is what was scanned.
  const file = await open(request.archive, 'r');
  try {
    const entries = await scanArchive(request.archive, file, request.format, request.limits);
    send({ kind: 'scanned', entries });
    const command = await new Promise<UnpackCommand>((resolve) => port.once('message', resolve));
    if (command.kind === 'extract') {
      await extractScanned(request.archive, file, command.dest, entries, command.folder);
      send({ kind: 'extracted' });
    }
  } finally {
    await file.close();
  }
} catch (error) {
  // Refusals keep their code; anything else (a full disk) is said as it is.
  send(error instanceof TheseusError ? { kind: 'refused', code: error.code, message: error.message } : { kind: 'failed', message: errorMessage(error) });
}
port.close();
