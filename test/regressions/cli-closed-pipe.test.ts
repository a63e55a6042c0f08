// `kernel status | head -1` used to crash with an EPIPE stack trace once head had closed the
// pipe. A reader that stops early is not an error: the CLI exits quietly, with status 0.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { test } from 'node:test';
import { root } from '../helpers.ts';
import { tempDir } from '../release/helpers.ts';

test('the CLI exits quietly when its output pipe is closed early', async () => {
  const empty = await tempDir('theseus-pipe-');
  // The CLI itself, not a shell pipeline: `sh -c "kernel … | true"` reports the status of `true`,
  // which is 0 whatever the CLI did. Its stdout is a pipe whose reading end this process closes
  // before the CLI has written a byte (it still has tsx to load), so every write meets a closed pipe.
  const cli = spawn(process.execPath, [`${root}kernel`, 'logs', '--root', empty], { stdio: ['ignore', 'pipe', 'pipe'] });
  cli.stdout.destroy();
  let stderr = '';
  cli.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const timer = setTimeout(() => cli.kill('SIGKILL'), 30_000);
  const [code, signal] = (await once(cli, 'exit')) as [number | null, NodeJS.Signals | null];
  clearTimeout(timer);
  assert.deepEqual({ code, signal }, { code: 0, signal: null }, stderr);
  assert.doesNotMatch(stderr, /EPIPE|Unhandled 'error' event/);
});
