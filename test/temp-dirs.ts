// Temporary folders for tests, removed when the test file's process ends well. A run of the suite
// makes thousands of them (deploy roots, releases, hand-made archives), and left behind they
// filled this machine's /tmp by 20 GB. A file whose tests failed keeps its folders, and says
// where, so the failure can be looked at; THESEUS_KEEP_TEMP=1 keeps them always.
//
// Node built-ins only: the fast release tests import this without loading anything else.

import { rmSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const made: string[] = [];

process.once('exit', (code) => {
  if (made.length === 0) return;
  if (code !== 0 || process.env.THESEUS_KEEP_TEMP === '1') {
    process.stderr.write(`# kept ${made.length} temporary folder(s), first: ${made[0]}\n`);
    return;
  }
  // Anything still running in one of them (a kernel a failed test did not stop) is past helping;
  // force: true, so a folder a test removed itself is no error.
  for (const dir of made) rmSync(dir, { recursive: true, force: true, maxRetries: 2 });
});

/** A new folder under the OS's temp folder, removed when this process exits with code 0. */
export async function tempDir(prefix = 'theseus-test-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  made.push(dir);
  return dir;
}
