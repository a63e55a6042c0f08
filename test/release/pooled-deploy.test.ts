// Pooled services in a deployed release: the tarball's bundled kernel (lib/kernel.mjs) starts
// piscina pools away from the repo, with no node_modules but the piscina it ships
// (lib/node_modules/piscina) and the prebuilt pool runtime (lib/pool-worker.mjs), and hot-swaps
// them from the command line.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { extract } from 'tar';
import { request } from '../../kernel/cli/control-client.ts';
import { buildRelease } from '../../kernel/release/build.ts';
import { fixture, root as repoRoot } from '../helpers.ts';
import { tempDir } from './helpers.ts';

const roots: string[] = [];

function cli(root: string, ...args: string[]) {
  // A bare PATH: nothing may be found through the checkout.
  return spawnSync(join(root, 'bin', 'kernel'), args, { cwd: root, encoding: 'utf8', timeout: 60_000, env: { PATH: `${join(process.execPath, '..')}:/usr/bin:/bin` } });
}

after(() => {
  for (const root of roots) cli(root, 'stop');
});

/** Builds version `version` of an app with a pooled `hasher` (running `pooledFixture`) and a stateful `counter`. */
async function buildApp(out: string, version: string, pooledFixture: string) {
  // A folder per version: a config module, once imported, is cached for the life of the process.
  const app = await tempDir('theseus-pooled-app-');
  await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'pooled', version, type: 'module' }));
  await writeFile(
    join(app, 'theseus.config.ts'),
    `import { defineRelease } from '${repoRoot}kernel/release/config.ts';\n` +
      `export default defineRelease({ app: 'pooled', probationMs: 100, services: {\n` +
      `  hasher: { entry: '${fixture(pooledFixture)}', pool: { size: 2 } },\n` +
      `  counter: { entry: '${fixture('counter-v1')}' },\n} });\n`,
  );
  return buildRelease({ configFile: join(app, 'theseus.config.ts'), outDir: out });
}

test('a deployed tarball runs a pooled service on piscina and hot-swaps its pool from the command line', async () => {
  const out = await tempDir('theseus-pooled-releases-');
  const first = await buildApp(out, '1.0.0', 'pooled-v1');
  const second = await buildApp(out, '1.0.1', 'pooled-v2');
  assert.deepEqual(first.manifest.services.hasher!.pool, { size: 2 });

  const root = await tempDir('theseus-pooled-deploy-');
  roots.push(root);
  await extract({ file: first.tarball, cwd: root });
  assert.ok(!root.startsWith(repoRoot));
  for (const file of ['lib/pool-worker.mjs', 'lib/node_modules/piscina/package.json', 'lib/node_modules/piscina/dist/worker.js']) {
    assert.ok(await stat(join(root, file)).catch(() => null), `${file} is in the tarball`);
  }

  const started = cli(root, 'start');
  assert.equal(started.status, 0, started.stderr + started.stdout);
  const call = async (method: string, ...args: unknown[]) => ((await request(root, 'call', { service: 'hasher', method, args })) as { reply: unknown }).reply;
  assert.equal(await call('fib', 20), 6765);
  assert.deepEqual(await call('whoami', 1).then((reply) => (reply as { code: string; release: string }).release), '1.0.0');
  await assert.rejects(call('fail'), { code: 'E_HANDLER_FAILED' });

  const upgraded = cli(root, 'upgrade', second.tarball, '--json');
  assert.equal(upgraded.status, 0, upgraded.stderr + upgraded.stdout);
  const answer = (await call('whoami', 2)) as { code: string; release: string };
  assert.deepEqual([answer.code, answer.release], ['v2', '1.0.1']);

  const status = JSON.parse(cli(root, 'status', '--json').stdout) as { release: string; services: Array<{ name: string; release: string; pool?: { size: number; threadIds: number[] } }> };
  assert.equal(status.release, '1.0.1');
  const hasher = status.services.find((service) => service.name === 'hasher')!;
  assert.equal(hasher.release, '1.0.1');
  assert.equal(hasher.pool?.threadIds.length, 2);
  assert.equal(status.services.find((service) => service.name === 'counter')?.release, '1.0.0', 'the unchanged stateful service stayed');

  const stopped = cli(root, 'stop');
  assert.equal(stopped.status, 0, stopped.stderr);
});
