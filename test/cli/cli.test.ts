// The real CLI, run as a subprocess the way a user runs it: `node kernel <verb>` from the root.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { root, runAsync } from '../helpers.ts';

function kernel(...args: string[]) {
  return spawnSync(process.execPath, ['kernel', ...args], { cwd: root, encoding: 'utf8', timeout: 30_000 });
}

test('kernel --help lists every verb and exits 0', () => {
  const result = kernel('--help');
  assert.equal(result.status, 0);
  for (const verb of ['start', 'foreground', 'stop', 'ping', 'pid', 'status', 'upgrade', 'downgrade', 'commit', 'releases', 'remove', 'console', 'logs', 'init', 'release', 'systemd-unit', 'dashboard']) {
    assert.match(result.stdout, new RegExp(`^  ${verb} `, 'm'));
  }
});

test('every verb answers --help', async () => {
  // Side by side: each is its own process that only reads, and most of its time is Node booting.
  const verbs = ['start', 'upgrade', 'console', 'version', 'release', 'init', 'foreground', 'releases', 'remove', 'systemd-unit', 'dashboard'];
  const results = await Promise.all(verbs.map((verb) => runAsync(process.execPath, ['kernel', verb, '--help'], { cwd: root })));
  for (const [index, verb] of verbs.entries()) {
    assert.equal(results[index]!.status, 0, verb);
    assert.match(results[index]!.stdout, new RegExp(`Usage: node kernel ${verb}`));
  }
});

test('an unknown verb is a usage error in one line, without a stack trace', () => {
  const result = kernel('upgarde');
  assert.equal(result.status, 2);
  assert.equal(result.stderr.trim().split('\n').length, 1);
  assert.match(result.stderr, /unknown verb 'upgarde'/);
});

test('a verb that needs a running kernel says there is none, in one line, and exits 1', () => {
  for (const verb of ['console', 'dashboard']) {
    const result = spawnSync(process.execPath, [`${root}kernel`, verb, '--root', '/nonexistent-theseus-root'], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(result.status, 1, verb);
    assert.match(result.stderr, new RegExp(`^kernel ${verb}: No kernel is running in /nonexistent-theseus-root .*\\[E_KERNEL_NOT_RUNNING\\]\n$`));
  }
});

test('kernel release builds from a config and prints its steps and timing; kernel init writes a commented config', async () => {
  const { readFile, writeFile, mkdir } = await import('node:fs/promises');
  const { tempDir } = await import('../temp-dirs.ts');
  const { join } = await import('node:path');
  const out = await tempDir('theseus-cli-');
  const built = kernel('release', '--config', 'services/sequence/0.1.0/theseus.config.ts', '--out', out);
  assert.equal(built.status, 0, built.stderr);
  assert.match(built.stdout, /Building sequence 0\.1\.0/);
  assert.match(built.stdout, /Built sequence 0\.1\.0 in \d+ ms/);
  assert.match(built.stdout, /steps: config [\d.]+ ms, bundle [\d.]+ ms/);

  // A user error is one line with its code, and exit 1.
  const missing = kernel('release', '--config', join(out, 'nope.config.ts'));
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /^kernel release: No release configuration at .*nope\.config\.ts\. Run 'node kernel init' to write one\. \[E_CONFIG_MISSING\]\n$/);

  const app = await tempDir('theseus-init-');
  await writeFile(join(app, 'package.json'), JSON.stringify({ name: '@acme/ledger', version: '1.0.0' }));
  await mkdir(join(app, 'services', 'ledger'), { recursive: true });
  await writeFile(join(app, 'services', 'ledger', 'index.ts'), 'export default {};');
  const init = spawnSync(process.execPath, [join(root, 'kernel'), 'init'], { cwd: app, encoding: 'utf8' });
  assert.equal(init.status, 0, init.stderr);
  const config = await readFile(join(app, 'theseus.config.ts'), 'utf8');
  assert.match(config, /app: 'ledger'/);
  assert.match(config, /ledger: \{ entry: '\.\/services\/ledger\/index\.ts' \}/);
  for (const option of ['app:', 'services:', 'drainTimeoutMs:', 'node:', 'hooks:', 'runtimeConfig:']) {
    const line = config.split('\n').findIndex((l) => l.trim().startsWith(option));
    assert.ok(line > 0 && config.split('\n')[line - 1]!.trim().startsWith('//'), `${option} has a comment above it`);
  }
  const again = spawnSync(process.execPath, [join(root, 'kernel'), 'init'], { cwd: app, encoding: 'utf8' });
  assert.equal(again.status, 1);
  assert.match(again.stderr, /\[E_CONFIG_EXISTS\]/);
});
