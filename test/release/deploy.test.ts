// A built tarball is all a machine with Node.js needs: unpacked into an empty folder, it starts
// with its own bin/kernel, without the repo. And a deploy root's releases can be swapped to and
// back, down to the very first one.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { test } from 'node:test';
import { extract } from 'tar';
import { serviceSources, startFromRoot } from '../../kernel/main/deploy-root.ts';
import { installRelease } from '../../kernel/release/install.ts';
import { readRegistry, withCurrent, writeRegistry } from '../../kernel/release/registry.ts';
import { logCollector, parseSequenceReply, root as repoRoot, type SequenceApi } from '../helpers.ts';
import { buildExamples, tempDir } from './helpers.ts';

const built = buildExamples();

/** Runs `bin/kernel foreground` until it prints its ready line, then stops it with SIGTERM. */
async function runForeground(deployRoot: string): Promise<{ ready: string; output: string; code: number | null }> {
  // A bare environment and a folder outside the repo: nothing can be found through the checkout.
  const child = spawn(join(deployRoot, 'bin', 'kernel'), ['foreground'], {
    cwd: deployRoot,
    env: { PATH: `${join(process.execPath, '..')}:/usr/bin:/bin` },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const deadline = Date.now() + 30_000;
  while (!/kernel ready/.test(output) && child.exitCode === null && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const ready = output.split('\n').find((line) => line.startsWith('kernel ready')) ?? '';
  if (child.exitCode === null) child.kill('SIGTERM');
  const [code] = (child.exitCode === null ? await once(child, 'exit') : [child.exitCode]) as [number | null];
  return { ready, output, code };
}

test('an unpacked tarball starts with its own bin/kernel, away from the repo', async () => {
  const { results } = await built;
  const deployRoot = await tempDir('theseus-deploy-');
  await extract({ file: results[0]!.tarball, cwd: deployRoot });
  assert.ok(!deployRoot.startsWith(repoRoot));
  const run = await runForeground(deployRoot);
  assert.match(run.ready, /^kernel ready: sequence 0\.1\.0, pid \d+, services: sequence \(vsn 0\)$/, run.output);
  assert.equal(run.code, 0, run.output);
  assert.match(run.output, /kernel stopped/);

  const releases = spawnSync(join(deployRoot, 'bin', 'kernel'), ['releases'], { encoding: 'utf8' });
  assert.equal(releases.status, 0);
  assert.match(releases.stdout, /^0\.1\.0\s+permanent/m);
});

test('a release on trial (not committed) reverts to the permanent one on restart', async () => {
  const { results } = await built;
  const deployRoot = await tempDir('theseus-deploy-');
  await extract({ file: results[0]!.tarball, cwd: deployRoot });
  await installRelease(deployRoot, results[1]!.tarball);
  await writeRegistry(deployRoot, withCurrent(await readRegistry(deployRoot), '0.2.0'));
  const run = await runForeground(deployRoot);
  assert.match(run.output, /Release 0\.2\.0 was on trial \(not committed\) and was reverted/);
  assert.match(run.ready, /sequence 0\.1\.0/);
  const registry = await readRegistry(deployRoot);
  assert.deepEqual(registry.releases.map((r) => [r.version, r.status]), [['0.1.0', 'permanent'], ['0.2.0', 'old']]);
});

test('from a deploy root: up through the installed releases and back down to the very first', async () => {
  const { results } = await built;
  const deployRoot = await tempDir('theseus-deploy-');
  await extract({ file: results[0]!.tarball, cwd: deployRoot });
  const booted = await startFromRoot(deployRoot, logCollector().onLog);
  const { kernel } = booted;
  try {
    const seq = kernel.client<SequenceApi>('sequence');
    assert.equal(await seq.nextNumber(), 456);
    const swapTo = async (index: number) => {
      const installed = await installRelease(deployRoot, results[index]!.tarball);
      return kernel.upgrade({ release: installed.version, services: serviceSources(installed.dir, installed.manifest) });
    };
    await swapTo(1);
    assert.equal(await seq.nextNumber(), 'The next number is 457');
    const up = await swapTo(2);
    assert.equal(up.services[0]!.migration, '0 -> 1 (up, in 0.3.0)');
    assert.equal(parseSequenceReply(await seq.nextNumber()), 458);
    // Back to the first release, through 0.2.0: the down migration runs in 0.3.0's code.
    await swapTo(1);
    const down = await swapTo(0);
    assert.equal(down.services[0]!.to.release, '0.1.0');
    assert.equal(await seq.nextNumber(), 459, 'the number survived every swap');
  } finally {
    await kernel.stop();
  }
});

test('--include-node: the tarball carries Node.js, and bin/kernel runs with nothing on PATH', async () => {
  const { buildRelease } = await import('../../kernel/release/build.ts');
  const { exampleConfig } = await import('./helpers.ts');
  const result = await buildRelease({ configFile: exampleConfig('0.1.0'), outDir: await tempDir('theseus-erts-'), includeNode: true });
  const deployRoot = await tempDir('theseus-deploy-');
  await extract({ file: result.tarball, cwd: deployRoot });
  const run = spawnSync(join(deployRoot, 'bin', 'kernel'), ['releases'], { env: { PATH: '/nonexistent' }, encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
  assert.match(run.stdout, /^0\.1\.0\s+permanent/m);
});
