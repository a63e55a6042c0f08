// A built tarball is all a machine with Node.js needs: unpacked into an empty folder, it starts
// with its own bin/kernel, without the repo. And a deploy root's releases can be swapped to and
// back, down to the very first one.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { readdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { extract } from 'tar';
import { serviceSources, startFromRoot } from '../../kernel/main/deploy-root.ts';
import { installRelease } from '../../kernel/release/install.ts';
import { readRegistry, withCurrent, writeRegistry } from '../../kernel/release/registry.ts';
import { logCollector, parseSequenceReply, root as repoRoot, swapJson, type SequenceApi } from '../helpers.ts';
import { sharedExamples, gzipBomb, rawTar, tempDir } from './helpers.ts';

const built = sharedExamples();
const started: string[] = [];

/** bin/kernel of a deploy root, with a bare environment: nothing is found through the checkout. */
function deployedCli(deployRoot: string, ...args: string[]) {
  return spawnSync(join(deployRoot, 'bin', 'kernel'), args, { cwd: deployRoot, encoding: 'utf8', timeout: 120_000, env: { PATH: `${join(process.execPath, '..')}:/usr/bin:/bin` } });
}

after(() => {
  for (const deployRoot of started) deployedCli(deployRoot, 'stop');
});

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
  const [code, signal] = (child.exitCode === null ? await once(child, 'exit') : [child.exitCode, child.signalCode]) as [number | null, NodeJS.Signals | null];
  // The signal that ended it, if one did, goes with the output: a failure then says which.
  return { ready, output: signal ? `${output}\n(ended by ${signal})` : output, code };
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
  assert.match(run.output, /Release 0\.2\.0 was on trial \(never committed\) and was reverted: running the permanent release 0\.1\.0\./);
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

test('a deployed kernel unpacks upgrades in its own lib/unpack-worker.mjs, and refuses hostile archives there', async () => {
  const { results } = await built;
  const deployRoot = await tempDir('theseus-deploy-');
  await extract({ file: results[0]!.tarball, cwd: deployRoot });
  assert.ok((await readdir(join(deployRoot, 'lib'))).includes('unpack-worker.mjs'), 'the tarball ships the unpack worker');
  // Its injected faults are compiled out, as the kernel's are: nothing reads THESEUS_FAULTS.
  const unpackWorker = await readFile(join(deployRoot, 'lib', 'unpack-worker.mjs'), 'utf8');
  assert.ok(unpackWorker.includes('injected by THESEUS_FAULTS'), 'the fault code is in the bundle');
  assert.doesNotMatch(unpackWorker, /process\.env\.THESEUS_FAULTS\s*\?\?/, 'but nothing reads the variable');
  const start = deployedCli(deployRoot, 'start');
  assert.equal(start.status, 0, start.stderr + start.stdout);
  started.push(deployRoot);

  const upgrade = deployedCli(deployRoot, 'upgrade', results[1]!.tarball, '--json');
  assert.equal(upgrade.status, 0, upgrade.stderr + upgrade.stdout);
  assert.equal(swapJson(upgrade.stdout).to, '0.2.0');

  // Refused in the worker, each with its code: a GNU sparse entry, and a bomb over the limit.
  const hostile = await tempDir('theseus-hostile-');
  await writeFile(join(hostile, 'sparse.tar.gz'), gzipSync(rawTar([{ path: 'releases/0.9.0/disk.img', typeflag: 'S', size: 0 }])));
  await writeFile(join(hostile, 'bomb.tar.gz'), gzipBomb([{ path: 'releases/0.9.0/bomb.bin', typeflag: '0', size: 600 * 1024 * 1024 }]));
  for (const [file, code] of [['sparse.tar.gz', 'E_TAR_ENTRY_TYPE'], ['bomb.tar.gz', 'E_TAR_TOO_LARGE']] as const) {
    const refused = deployedCli(deployRoot, 'upgrade', join(hostile, file), '--json');
    assert.equal(refused.status, 1, refused.stdout + refused.stderr);
    assert.equal(swapJson(refused.stdout).error.code, code, refused.stdout);
  }

  // Without its worker module the deployed kernel unpacks nothing (never on its main thread),
  // which shows the upgrade above went through lib/unpack-worker.mjs.
  await rename(join(deployRoot, 'lib', 'unpack-worker.mjs'), join(deployRoot, 'lib', 'unpack-worker.mjs.away'));
  const without = deployedCli(deployRoot, 'upgrade', results[2]!.tarball, '--json');
  assert.equal(without.status, 1, without.stdout + without.stderr);
  assert.equal(swapJson(without.stdout).error.code, 'E_UNPACK_WORKER_FAILED', without.stdout);
  assert.equal(JSON.parse(deployedCli(deployRoot, 'status', '--json').stdout).release, '0.2.0', 'the running release is untouched');
  assert.equal(deployedCli(deployRoot, 'stop').status, 0);
});
