// The real CLI, run as a subprocess the way a user runs it: `node kernel <verb>` from the root.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { root } from '../helpers.ts';

function kernel(...args: string[]) {
  return spawnSync(process.execPath, ['kernel', ...args], { cwd: root, encoding: 'utf8', timeout: 30_000 });
}

test('kernel --help lists every verb and exits 0', () => {
  const result = kernel('--help');
  assert.equal(result.status, 0);
  for (const verb of ['start', 'foreground', 'stop', 'ping', 'pid', 'status', 'upgrade', 'downgrade', 'commit', 'releases', 'remove', 'console', 'logs', 'init', 'release']) {
    assert.match(result.stdout, new RegExp(`^  ${verb} `, 'm'));
  }
});

test('every verb answers --help', () => {
  for (const verb of ['start', 'upgrade', 'console', 'version']) {
    const result = kernel(verb, '--help');
    assert.equal(result.status, 0, verb);
    assert.match(result.stdout, new RegExp(`Usage: kernel ${verb}`));
  }
});

test('an unknown verb is a usage error in one line, without a stack trace', () => {
  const result = kernel('upgarde');
  assert.equal(result.status, 2);
  assert.equal(result.stderr.trim().split('\n').length, 1);
  assert.match(result.stderr, /unknown verb 'upgarde'/);
});

test('verbs that are not built yet say so and exit 3', () => {
  const result = kernel('upgrade', './releases/0.2.0');
  assert.equal(result.status, 3);
  assert.match(result.stderr, /not built yet/);
});
