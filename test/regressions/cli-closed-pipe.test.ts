// `kernel status | head -1` used to crash with an EPIPE stack trace once head had closed the
// pipe. A reader that stops early is not an error: the CLI exits quietly.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { root } from '../helpers.ts';
import { tempDir } from '../release/helpers.ts';

test('the CLI exits quietly when its output pipe is closed early', async () => {
  const empty = await tempDir('theseus-pipe-');
  // `true` exits before the CLI writes a byte, so every write meets a closed pipe.
  const result = spawnSync('sh', ['-c', `"${process.execPath}" "${root}kernel" logs --root "${empty}" | true`], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(result.status, 0);
  assert.doesNotMatch(result.stderr, /EPIPE|Unhandled 'error' event/);
});
