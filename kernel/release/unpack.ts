// The main thread's side of the unpack worker (unpack-worker.ts): it hands the worker an
// archive, is told what the archive holds, decides which folder to extract (or refuses), and
// waits. Runs in the kernel's main thread and the CLI's process; all the inflating happens in the
// worker.
//
//   main -> worker   workerData { archive, format, limits }
//   worker -> main   { scanned, entries }      or a refusal
//   main -> worker   { extract, dest, folder }  or { cancel }
//   worker -> main   { extracted }              or a refusal

import { Worker } from 'node:worker_threads';
import { TheseusError, errorMessage, theseusError } from '../common/errors.ts';
import { defaultCacheDir, unpackRuntimeBundle } from './bundler.ts';
import type { ArchiveFormat } from './tarball.ts';
import type { TarEntry, TarLimits } from './tar-scan.ts';

export interface UnpackRequest {
  archive: string;
  format: ArchiveFormat;
  limits: TarLimits;
}

export type UnpackCommand = { kind: 'extract'; dest: string; folder: string } | { kind: 'cancel' };

export type UnpackReply =
  | { kind: 'scanned'; entries: TarEntry[] }
  | { kind: 'extracted' }
  | { kind: 'refused'; code: string; message: string }
  | { kind: 'failed'; message: string };

/**
 * Scans `archive` in a worker thread, asks `choose` which archive folder to extract (it throws to
 * refuse the archive), then extracts that folder into `dest` (created by the worker, after the
 * scan: a refused archive writes nothing at all). Returns the folder extracted.
 */
export async function unpackArchive(request: UnpackRequest, dest: string, choose: (entries: TarEntry[]) => string): Promise<string> {
  const runtime = await unpackRuntimeBundle(defaultCacheDir());
  const worker = new Worker(runtime.file, {
    workerData: request,
    name: `unpack ${request.archive}`,
    // Plain bundled JavaScript: no loader (tsx) nor per-process flag of the kernel's own.
    execArgv: [],
  });
  let exitReason = 'it exited before answering';
  worker.on('error', (error) => (exitReason = `uncaught ${errorMessage(error)}`));
  const replies: UnpackReply[] = [];
  let wake: (() => void) | null = null;
  let exited = false;
  worker.on('message', (reply: UnpackReply) => {
    replies.push(reply);
    wake?.();
  });
  worker.once('exit', () => {
    exited = true;
    wake?.();
  });
  const next = async (): Promise<UnpackReply> => {
    while (replies.length === 0) {
      if (exited) throw theseusError('E_UNPACK_WORKER_FAILED', request.archive, exitReason);
      await new Promise<void>((resolve) => (wake = resolve));
      wake = null;
    }
    const reply = replies.shift()!;
    if (reply.kind === 'refused') throw new TheseusError(reply.code, reply.message);
    // Not a refusal of the archive: the installer reports it as a failed install (E_INSTALL_FAILED).
    if (reply.kind === 'failed') throw new Error(reply.message);
    return reply;
  };
  try {
    const scanned = await next();
    if (scanned.kind !== 'scanned') throw theseusError('E_UNPACK_WORKER_FAILED', request.archive, `it answered '${scanned.kind}' before scanning`);
    let folder: string;
    try {
      folder = choose(scanned.entries);
    } catch (error) {
      worker.postMessage({ kind: 'cancel' } satisfies UnpackCommand);
      throw error;
    }
    worker.postMessage({ kind: 'extract', dest, folder } satisfies UnpackCommand);
    const done = await next();
    if (done.kind !== 'extracted') throw theseusError('E_UNPACK_WORKER_FAILED', request.archive, `it answered '${done.kind}' to extract`);
    return folder;
  } finally {
    await worker.terminate();
  }
}
