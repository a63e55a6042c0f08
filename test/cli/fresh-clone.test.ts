// The newcomer's first commands, as the front page (README.md, the first-hour block) writes them,
// in a fresh clone of the repo: nothing built, no releases/, no var/. `node kernel start` builds
// the example's releases from the repo's services/sequence/<version>/theseus.config.ts and says
// so; the upgrade, the console, status and stop then work as the block says. The clone is of the
// committed tree, as a newcomer would get it.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { root as repo } from '../helpers.ts';
import { tempDir } from '../release/helpers.ts';

let clone = '';

/** The commands of README.md's first-hour block, each as argv after `node kernel`, comments dropped. */
async function firstHourCommands(): Promise<string[][]> {
  const readme = await readFile(join(repo, 'README.md'), 'utf8');
  const block = /<!-- first-hour:start -->\n```sh\n([\s\S]*?)```\n<!-- first-hour:end -->/.exec(readme);
  assert.ok(block, 'README.md has the first-hour block');
  const lines = block[1]!.split('\n').map((line) => line.replace(/#.*$/, '').trim()).filter(Boolean);
  // `npm ci` is the checkout's own node_modules here (linked below): no network in a test.
  assert.equal(lines[0], 'npm ci');
  return lines.slice(1).map((line) => {
    assert.match(line, /^node kernel /, `a first-hour command the test knows how to run: ${line}`);
    return line.split(/\s+/).slice(2);
  });
}

function kernel(...args: string[]) {
  return spawnSync(process.execPath, ['kernel', ...args], { cwd: clone, input: '', encoding: 'utf8', timeout: 300_000, env: { ...process.env, THESEUS_ROOT: '', npm_command: '' } });
}

after(() => {
  if (clone && existsSync(join(clone, 'var', 'kernel.pid'))) kernel('stop');
});

test('in a fresh clone, node kernel start, upgrade ./releases/0.2.0, console, status and stop each exit 0', async () => {
  clone = join(await tempDir('theseus-clone-'), 'theseus');
  const cloned = spawnSync('git', ['clone', '--quiet', repo, clone], { encoding: 'utf8' });
  assert.equal(cloned.status, 0, cloned.stderr);
  // `npm ci`'s result, without the network: the checkout's own node_modules.
  await symlink(join(repo, 'node_modules'), join(clone, 'node_modules'), 'dir');
  assert.ok(!existsSync(join(clone, 'releases', '0.1.0')), 'a fresh clone has no release built');
  // The block is what a newcomer types; the checks below follow its order.
  const commands = await firstHourCommands();
  assert.deepEqual(commands, [['start'], ['upgrade', './releases/0.2.0'], ['console'], ['status'], ['stop']]);

  const started = kernel(...commands[0]!);
  assert.equal(started.status, 0, started.stderr + started.stdout);
  assert.match(started.stdout, /^No release built yet in .*: building the example's releases 0\.1\.0, 0\.2\.0, 0\.3\.0, 0\.4\.0, 0\.5\.0 \(services\/sequence\/\{0\.1\.0,0\.2\.0,0\.3\.0,0\.4\.0,0\.5\.0\}\/theseus\.config\.ts\) into releases\/ first\.$/m);
  assert.match(started.stdout, /^Release 0\.1\.0, the first of the example's releases, was made permanent\. Next: 'node kernel upgrade \.\/releases\/0\.2\.0'\.$/m);
  assert.match(started.stdout, /^Kernel started: pid \d+, release 0\.1\.0/m);
  assert.match(started.stdout, /status: node kernel status .* stop: node kernel stop$/m);

  const upgraded = kernel(...commands[1]!);
  assert.equal(upgraded.status, 0, upgraded.stderr + upgraded.stdout);
  assert.match(upgraded.stdout, /^Release 0\.2\.0 is running and permanent\.$/m);

  const consoled = kernel(...commands[2]!);
  assert.equal(consoled.status, 0, consoled.stderr + consoled.stdout);
  assert.match(consoled.stdout, /^Theseus console: sequence 0\.2\.0/m);

  const status = kernel(...commands[3]!);
  assert.equal(status.status, 0, status.stderr + status.stdout);
  assert.match(status.stdout, /^sequence 0\.2\.0 \(permanent: 0\.2\.0\)/);

  const stopped = kernel(...commands[4]!);
  assert.equal(stopped.status, 0, stopped.stderr + stopped.stdout);
  assert.match(stopped.stdout, /^Kernel stopped \(pid \d+\)\.$/m);
});
