// The newcomer's first commands, as written, in a fresh clone of the repo: nothing built, no
// releases/, no var/. `node kernel start` builds the example's releases from the repo's
// services/sequence/<version>/theseus.config.ts and says so; the upgrade, the console, status and
// stop then work as the card says. The clone is of the committed tree, as a newcomer would get it.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { root as repo } from '../helpers.ts';
import { tempDir } from '../release/helpers.ts';

let clone = '';

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

  const started = kernel('start');
  assert.equal(started.status, 0, started.stderr + started.stdout);
  assert.match(started.stdout, /^No release built yet in .*: building the example's releases 0\.1\.0, 0\.2\.0, 0\.3\.0 \(services\/sequence\/\{0\.1\.0,0\.2\.0,0\.3\.0\}\/theseus\.config\.ts\) into releases\/ first\.$/m);
  assert.match(started.stdout, /^Release 0\.1\.0, the first of the example's releases, was made permanent\. Next: 'node kernel upgrade \.\/releases\/0\.2\.0'\.$/m);
  assert.match(started.stdout, /^Kernel started: pid \d+, release 0\.1\.0/m);
  assert.match(started.stdout, /status: node kernel status .* stop: node kernel stop$/m);

  const upgraded = kernel('upgrade', './releases/0.2.0');
  assert.equal(upgraded.status, 0, upgraded.stderr + upgraded.stdout);
  assert.match(upgraded.stdout, /^Release 0\.2\.0 is running and permanent\.$/m);

  const consoled = kernel('console');
  assert.equal(consoled.status, 0, consoled.stderr + consoled.stdout);
  assert.match(consoled.stdout, /^Theseus console: sequence 0\.2\.0/m);

  const status = kernel('status');
  assert.equal(status.status, 0, status.stderr + status.stdout);
  assert.match(status.stdout, /^sequence 0\.2\.0 \(permanent: 0\.2\.0\)/);

  const stopped = kernel('stop');
  assert.equal(stopped.status, 0, stopped.stderr + stopped.stdout);
  assert.match(stopped.stdout, /^Kernel stopped \(pid \d+\)\.$/m);
});
