// The playbooks in scripts/ansible/ parse, with the role they import (ansible-playbook
// --syntax-check needs no host). The fleet they run against is rolling-upgrade.test.ts's.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { root } from '../helpers.ts';

const dir = join(root, 'scripts', 'ansible');
// Ansible's own files go here, not into ~/.ansible.
const home = mkdtempSync(join(tmpdir(), 'theseus-ansible-'));
after(() => rmSync(home, { recursive: true, force: true }));

for (const playbook of ['install.yml', 'upgrade.yml', 'downgrade.yml']) {
  test(`ansible-playbook --syntax-check ${playbook}`, () => {
    const result = spawnSync('ansible-playbook', ['--syntax-check', '-i', 'inventory.example.ini', playbook], {
      cwd: dir,
      encoding: 'utf8',
      env: { ...process.env, ANSIBLE_CONFIG: join(dir, 'ansible.cfg'), ANSIBLE_NOCOLOR: '1', ANSIBLE_HOME: home, ANSIBLE_LOCAL_TEMP: join(home, 'tmp') },
    });
    assert.ifError(result.error ? new Error(`ansible-playbook could not run (${result.error.message}): apt-get install ansible (.ci/run does)`) : null);
    assert.equal(result.status, 0, `${result.stdout}${result.stderr}`);
    assert.match(result.stdout, new RegExp(`playbook: ${playbook}`));
  });
}
