// Found by piping a script into `kernel console`: Node's REPL read piped lines as fast as they
// came and evaluated the next while an awaited call still ran, so results printed out of order and
// some not at all (`1+1` then an awaited call printed only the call's number). Piped lines now
// run one after the other, as a script's do.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { extract } from 'tar';
import { buildExamples, tempDir } from '../release/helpers.ts';

const built = buildExamples();
let root = '';

function cli(args: string[], input?: string) {
  return spawnSync(join(root, 'bin', 'kernel'), args, { cwd: root, input, encoding: 'utf8', timeout: 60_000, env: { ...process.env, THESEUS_ROOT: '' } });
}

after(() => {
  if (root) cli(['stop']);
});

test('a script piped into the console runs its lines in order, each printing its result, awaited calls and casts among them', async () => {
  const { results } = await built;
  root = await tempDir('theseus-console-piped-');
  await extract({ file: results[0]!.tarball, cwd: root });
  const started = cli(['start']);
  assert.equal(started.status, 0, started.stderr + started.stdout);

  const script = [
    "'first'",
    'await sequence.nextNumber()',
    "'second'",
    'await sequence.incrementNumber(10)',
    'await sequence.nextNumber()',
    // A multi-line entry between awaited calls.
    'function twice(x) {',
    '  return x * 2 }',
    'twice(21)',
    '.status',
    "'last'",
  ].join('\n');
  const run = cli(['console'], `${script}\n`);
  assert.equal(run.status, 0, run.stderr + run.stdout);
  // What each line printed, in the order printed (the prompt marks where each begins).
  const printed = run.stdout
    .split('theseus> ')
    .slice(1)
    .map((chunk) => chunk.trim().split('\n')[0]!)
    // The cast and the multi-line entry's first line print nothing but the next prompt.
    .filter((line) => line !== '' && line !== '...' && !line.startsWith('Left the console'));
  assert.equal(printed.length, 7, run.stdout);
  assert.deepEqual(printed.slice(0, 5), ["'first'", '456', "'second'", '467', '42'], run.stdout);
  assert.match(printed[5]!, /^sequence 0\.1\.0 \(permanent: 0\.1\.0\), pid \d+/, run.stdout);
  assert.equal(printed[6], "'last'", run.stdout);
});
