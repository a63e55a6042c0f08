// Injected I/O faults (THESEUS_FAULTS, honoured only outside a release's bundled kernel): a disk
// that is full when a release starts to unpack, and a registry that cannot be written at commit.
// The old release keeps serving under load, no number is lost or repeated, the error names its
// phase, the audit records it. And a release's own bundled kernel ignores THESEUS_FAULTS.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { extract } from 'tar';
import { ControlConnection, request } from '../../kernel/cli/control-client.ts';
import { KernelDaemon } from '../../kernel/main/daemon.ts';
import { installRelease } from '../../kernel/release/install.ts';
import { readRegistry } from '../../kernel/release/registry.ts';
import { parseSequenceReply, root as repo, waitForCalls } from '../helpers.ts';
import { sharedExamples, tempDir } from '../release/helpers.ts';

const built = sharedExamples();
/** Stops what runningRoot() started, for a test that failed before its finish(). */
const leftRunning: Array<() => Promise<void>> = [];
after(async () => {
  delete process.env.THESEUS_FAULTS;
  await Promise.all(leftRunning.map((stop) => stop()));
});

/** Calls answered before the fault, and again after it: the fault strikes a loaded kernel. */
const CALLS_AROUND_THE_FAULT = 200;

/** A daemon in this process (so THESEUS_FAULTS reaches it) on a fresh deploy root, with callers. */
async function runningRoot() {
  const { results } = await built;
  const root = await tempDir('theseus-faults-');
  await extract({ file: results[0]!.tarball, cwd: root });
  const daemon = await KernelDaemon.start({ root, terminal: false });
  const connection = await ControlConnection.open(root);
  const numbers: number[] = [];
  const failures: unknown[] = [];
  let stop = false;
  const callers = Array.from({ length: 20 }, async () => {
    while (!stop) {
      try {
        const { reply } = (await connection.request('call', { service: 'sequence', method: 'nextNumber', args: [] })) as { reply: unknown };
        numbers.push(parseSequenceReply(reply));
      } catch (error) {
        failures.push(error);
        stop = true;
      }
    }
  });
  let stopped: Promise<void> | null = null;
  const stopAll = () =>
    (stopped ??= (async () => {
      stop = true;
      await Promise.all(callers);
      connection.close();
      await daemon.stop();
    })());
  leftRunning.push(stopAll);
  const moreCalls = () => waitForCalls({ answered: () => numbers.length, failures: () => failures }, CALLS_AROUND_THE_FAULT);
  /** Stops the callers and the daemon; checks that every number went to exactly one caller. */
  const finish = async () => {
    stop = true;
    await Promise.all(callers);
    // The next number, asked once the callers are done: nothing was handed out after the last one
    // they received (a call answered to nobody at the end would leave no gap among theirs).
    const { reply: nextReply } = (await connection.request('call', { service: 'sequence', method: 'nextNumber', args: [] })) as { reply: unknown };
    await stopAll();
    assert.deepEqual(failures, []);
    assert.ok(numbers.length >= 2 * CALLS_AROUND_THE_FAULT, `the callers were answered ${numbers.length} times`);
    const sorted = [...numbers].sort((a, b) => a - b);
    assert.equal(sorted[0], 456, 'the first number is the first the service ever handed out');
    for (let i = 1; i < sorted.length; i++) assert.equal(sorted[i]! - sorted[i - 1]!, 1, `numbers stayed consecutive (at ${sorted[i - 1]})`);
    assert.equal(parseSequenceReply(nextReply), sorted.at(-1)! + 1, 'the number after the callers\' last is the next one handed out');
    return (await readFile(join(root, 'var', 'audit.jsonl'), 'utf8')).trim().split('\n').map((line) => JSON.parse(line) as { op: string; outcome: string; phase?: string; code?: string });
  };
  return { root, results, moreCalls, finish };
}

/**
 * An upgrade whose unpacking fails under `faults`: refused in check with E_INSTALL_FAILED and
 * `message`, no staging folder or half release left, the old release serving on under load, the
 * failure audited.
 */
async function unpackingFails(faults: string, message: RegExp): Promise<void> {
  const { root, results, moreCalls, finish } = await runningRoot();
  await moreCalls();
  process.env.THESEUS_FAULTS = faults;
  try {
    await assert.rejects(request(root, 'upgrade', { source: results[1]!.tarball, commit: true }), (error: Error & { code: string; phase?: string }) => {
      assert.equal(error.code, 'E_INSTALL_FAILED');
      assert.equal(error.phase, 'check');
      assert.match(error.message, message);
      return true;
    });
  } finally {
    delete process.env.THESEUS_FAULTS;
  }
  assert.deepEqual((await readdir(join(root, 'releases'))).sort(), ['0.1.0', 'RELEASES'], 'no staging folder or half release left');
  assert.equal(((await request(root, 'status', {})) as { release: string }).release, '0.1.0');
  await moreCalls();
  const audit = await finish();
  assert.ok(audit.some((e) => e.op === 'upgrade' && e.outcome === 'failed' && e.code === 'E_INSTALL_FAILED' && e.phase === 'check'));
}

// The fault strikes as extraction begins, before a byte is written: what it proves is the refusal,
// the audit and the cleanup of an empty staging folder. A disk that fills part-way through needs a
// fault point inside the extraction: the todo test below.
test('the disk is full when a release starts to unpack: refused in check, no staging folder left, the old release serves on', () =>
  unpackingFails('unpack-write', /no space left on device \(injected/));

test(
  'the disk fills part-way through unpacking: refused in check, the partly written staging folder removed, the old release serves on',
  // One byte: the fault strikes once the first file has started to land in the staging folder.
  () => unpackingFails('unpack-write-after:1', /no space left on device after [1-9]\d* bytes/),
);

test('the registry cannot be written at commit: the upgrade is reverted, the registry still tells the truth', async () => {
  const { root, results, moreCalls, finish } = await runningRoot();
  await installRelease(root, results[1]!.tarball);
  await moreCalls();
  process.env.THESEUS_FAULTS = 'registry-write';
  try {
    await assert.rejects(request(root, 'upgrade', { source: '0.2.0', commit: true }), (error: Error & { code: string; phase?: string }) => {
      assert.equal(error.code, 'E_REGISTRY_WRITE_FAILED');
      assert.equal(error.phase, 'commit');
      assert.match(error.message, /Reverted to 0\.1\.0/);
      return true;
    });
  } finally {
    delete process.env.THESEUS_FAULTS;
  }
  assert.equal(((await request(root, 'status', {})) as { release: string }).release, '0.1.0');
  const registry = await readRegistry(root);
  assert.deepEqual(registry.releases.map((r) => [r.version, r.status]), [['0.1.0', 'permanent'], ['0.2.0', 'unpacked']]);
  await moreCalls();
  const audit = await finish();
  assert.ok(audit.some((e) => e.op === 'upgrade' && e.outcome === 'rolled-back' && e.code === 'E_REGISTRY_WRITE_FAILED' && e.phase === 'commit'));
  assert.ok(audit.some((e) => e.op === 'rollback' && e.outcome === 'ok' && e.phase === 'commit'));
});

test("a release's bundled kernel cannot be made to fail: THESEUS_FAULTS is compiled out", async () => {
  const { results } = await built;
  const faults = { THESEUS_FAULTS: 'unpack-write,registry-write' };
  const kernels = {
    // The repo's kernel (through tsx), as crash-recovery.test.ts runs it: the variable reaches it.
    repo: (root: string, ...args: string[]) => spawnSync(process.execPath, [join(repo, 'kernel', 'index.js'), ...args, '--root', root], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, ...faults } }),
    // The release's own bin/kernel, running lib/kernel.mjs as a deployed root does.
    bundled: (root: string, ...args: string[]) => spawnSync(join(root, 'bin', 'kernel'), args, { cwd: root, encoding: 'utf8', timeout: 60_000, env: { ...process.env, ...faults, THESEUS_ROOT: '' } }),
  };
  const roots: Array<[keyof typeof kernels, string]> = [];
  try {
    for (const name of ['repo', 'bundled'] as const) {
      const root = await tempDir(`theseus-faults-${name}-`);
      await extract({ file: results[0]!.tarball, cwd: root });
      roots.push([name, root]);
      const started = kernels[name](root, 'start');
      assert.equal(started.status, 0, started.stderr + started.stdout);
    }
    const [[, repoRoot], [, bundledRoot]] = roots as [[string, string], [string, string]];
    // The control: with the same environment, the repo's kernel fails to unpack, so the variable
    // does reach the process that unpacks and the check below is not passing by accident.
    const failed = kernels.repo(repoRoot, 'upgrade', results[1]!.tarball);
    assert.equal(failed.status, 1, failed.stdout);
    assert.match(failed.stderr, /no space left on device \(injected by THESEUS_FAULTS\).*\[E_INSTALL_FAILED\]/);
    // The bundled kernel ignores it: it unpacks, switches and writes its registry at commit.
    const upgraded = kernels.bundled(bundledRoot, 'upgrade', results[1]!.tarball);
    assert.equal(upgraded.status, 0, upgraded.stderr + upgraded.stdout);
    const releases = JSON.parse(kernels.bundled(bundledRoot, 'releases', '--json').stdout) as Array<{ version: string; status: string; running: boolean }>;
    assert.deepEqual(releases.map((r) => [r.version, r.status, r.running]), [['0.1.0', 'old', false], ['0.2.0', 'permanent', true]]);
  } finally {
    for (const [name, root] of roots) kernels[name](root, 'stop');
  }
});
