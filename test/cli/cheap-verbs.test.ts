// `kernel ping`, `pid` and `status` are what monitoring runs every few seconds: they must stay
// cheap, loading the CLI and the shared protocol only, never the kernel (main/, worker/), the
// release tooling (release/) or the packages behind them. The real CLI is run with a loader
// hook that records every module it loads.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { extract } from 'tar';
import { root as repo } from '../helpers.ts';
import { sharedExamples, tempDir } from '../release/helpers.ts';

let deployRoot = '';

after(() => {
  if (deployRoot) spawnSync(join(deployRoot, 'bin', 'kernel'), ['stop'], { encoding: 'utf8', timeout: 60_000 });
});

/** Runs the repo's CLI with the loader hook; returns its result and the repo files it loaded. */
async function loadsOf(...args: string[]): Promise<{ status: number | null; stdout: string; loaded: string[] }> {
  const record = join(await tempDir('theseus-loads-'), 'loads.txt');
  const run = spawnSync(process.execPath, ['--import', join(repo, 'test/fixtures/loader/record-loads.mjs'), join(repo, 'kernel'), ...args], {
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, RECORD_LOADS: record, THESEUS_ROOT: '' },
  });
  const urls = (await readFile(record, 'utf8').catch(() => '')).trim().split('\n');
  await rm(record, { force: true });
  const prefix = new URL(repo, 'file://').href;
  return { status: run.status, stdout: run.stdout + run.stderr, loaded: urls.filter((url) => url.startsWith('file://')).map((url) => url.replace(prefix, '')) };
}

test('ping, pid and status load no kernel code, no release tooling and no heavy package', async () => {
  const { results } = await sharedExamples();
  deployRoot = await tempDir('theseus-cheap-');
  await extract({ file: results[0]!.tarball, cwd: deployRoot });
  const started = spawnSync(join(deployRoot, 'bin', 'kernel'), ['start'], { cwd: deployRoot, encoding: 'utf8', timeout: 60_000 });
  assert.equal(started.status, 0, started.stderr + started.stdout);

  for (const verb of ['ping', 'pid', 'status']) {
    const run = await loadsOf(verb, '--root', deployRoot);
    assert.equal(run.status, 0, `${verb}: ${run.stdout}`);
    const ours = run.loaded.filter((file) => !file.startsWith('node_modules/'));
    // The hook saw the CLI itself: an empty record would pass the checks below for nothing.
    assert.ok(ours.includes('kernel/cli/main.ts'), `${verb} loaded: ${ours.join(', ')}`);
    const kernelCode = ours.filter((file) => /^kernel\/(main|worker|release)\//.test(file));
    assert.deepEqual(kernelCode, [], `${verb} loaded kernel code`);
    const packages = new Set(run.loaded.filter((file) => file.startsWith('node_modules/')).map((file) => file.split('/')[1]));
    // Not listed: esbuild, which tsx itself loads to compile TypeScript (ours is used only by
    // release/bundler.ts, refused above), and typebox, the control protocol's own schema.
    for (const heavy of ['piscina', 'tar', 'semver', 'pino', 'ws', 'comlink']) {
      assert.ok(!packages.has(heavy), `${verb} loaded ${heavy}`);
    }
  }
  // The same hook does see the kernel's code when a verb needs it: `releases` with no kernel
  // running reads the registry (release/registry.ts).
  assert.equal(spawnSync(join(deployRoot, 'bin', 'kernel'), ['stop'], { encoding: 'utf8', timeout: 60_000 }).status, 0);
  const offline = await loadsOf('releases', '--root', deployRoot);
  assert.equal(offline.status, 0, offline.stdout);
  assert.ok(offline.loaded.includes('kernel/release/registry.ts'), offline.loaded.join(', '));
});
