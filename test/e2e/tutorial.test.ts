// Runs every shell block of the tutorial in services/README.md, in order, in a fresh folder: the
// tutorial cannot drift from what works.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { root } from '../helpers.ts';
import { tempDir } from '../release/helpers.ts';

let project = '';

after(() => {
  if (project) spawnSync('npx', ['kernel', 'stop'], { cwd: project });
});

test("the tutorial of services/README.md runs as written", async () => {
  const readme = await readFile(join(root, 'services', 'README.md'), 'utf8');
  const sections = [...readme.matchAll(/<!-- tutorial:start -->\n```sh\n([\s\S]*?)```\n<!-- tutorial:end -->/g)].map((match) => match[1]!);
  assert.ok(sections.length >= 3, 'services/README.md has the tutorial blocks');
  const script = sections.join('\n');
  for (const command of ['kernel init', 'kernel release', 'kernel start', 'kernel upgrade ./releases/0.2.0', 'kernel downgrade 0.1.0', 'kernel upgrade ./releases/0.3.0']) {
    assert.ok(script.includes(command), `the tutorial shows ${command}`);
  }
  const folder = await tempDir('theseus-tutorial-');
  project = join(folder, 'sequence');
  const result = spawnSync('bash', ['-euo', 'pipefail', '-c', script], {
    cwd: folder,
    encoding: 'utf8',
    timeout: 300_000,
    env: { ...process.env, THESEUS_REPO: root, THESEUS_ROOT: '' },
  });
  const output = `${result.stdout}\n${result.stderr}`;
  assert.equal(result.status, 0, output);
  assert.match(output, /Kernel started: pid \d+, release 0\.1\.0/);
  assert.match(output, /sequence: 0\.1\.0 \(vsn 0\) -> 0\.2\.0 \(vsn 0\), migration none/);
  assert.match(output, /sequence: 0\.2\.0 \(vsn 0\) -> 0\.1\.0 \(vsn 0\)/);
  assert.match(output, /sequence: 0\.2\.0 \(vsn 0\) -> 0\.3\.0 \(vsn 1\), migration 0 -> 1 \(up, in 0\.3\.0\)/);
  assert.match(output, /\[sequence@0\.3\.0 pid \d+\] Changing code from 0 to 1/);
  assert.match(output, /^0\.3\.0\s+permanent\s+yes/m);
  assert.match(output, /Kernel stopped/);
  project = '';
});
