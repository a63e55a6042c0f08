// Warm spares: a swap's new worker is a thread that had already booted the worker runtime. It
// must behave exactly as a worker booted from nothing (the sequence invariants hold under load,
// and the thread runs with the same flags, limits and environment); a spare that died while it
// waited is never handed out; stop leaves no spare behind. And the swap's old path, through the
// kernel, kept selectable for the bench, keeps the invariants too.

import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Kernel } from '../../kernel/index.ts';
import { loadReleaseConfig } from '../../kernel/release/config.ts';
import { checkSequenceInvariants, fixture, logCollector, osThreadCount, sequenceRelease, startSequenceLoad, stepRuns, waitForCalls, waitUntil } from '../helpers.ts';

/** Waits for the kernel's one spare to be ready and returns its thread id. */
async function readySpare(kernel: Kernel): Promise<number> {
  await waitUntil('a ready spare', () => kernel.spareWorkers.ready === 1);
  const [threadId] = kernel.spareWorkers.threadIds;
  assert.equal(kernel.spareWorkers.threadIds.length, 1);
  return threadId!;
}

test('swaps with a warm spare keep every invariant under load; each new worker is the spare, replaced after the swap', async () => {
  const kernel = await Kernel.start({ ...sequenceRelease('0.1.0'), onLog: logCollector().onLog });
  try {
    assert.equal(kernel.spareWorkers.wanted, 1, 'one spare by default');
    const load = startSequenceLoad(kernel, { callers: 200, ports: 20, inFlight: 2 });
    await waitForCalls(load, 1000);
    // Up and down between the codes, then the migration to 0.3.0 and back down (0.3.0's code).
    const targets = ['0.2.0', '0.1.0', '0.2.0', '0.3.0', '0.2.0'] as const;
    for (const [index, target] of targets.entries()) {
      const spare = await readySpare(kernel);
      const report = await kernel.upgrade(sequenceRelease(target));
      assert.equal(report.outcome, 'switched');
      assert.deepEqual(kernel.threadIds, [spare], `swap ${index + 1}: the new worker is the spare's thread`);
      // Refilled when upgrade() resolves (the thread exists), not during the pause.
      const [refill] = kernel.spareWorkers.threadIds;
      assert.ok(refill !== undefined && refill !== spare, `swap ${index + 1}: a new spare replaces the one taken`);
      await waitForCalls(load, 500);
    }
    assert.equal(kernel.spareWorkers.taken, targets.length);
    const result = await load.stop();
    const { sorted, problems } = checkSequenceInvariants(result);
    assert.deepEqual(problems, []);
    assert.equal(sorted[0], 456);
    assert.deepEqual(stepRuns(sorted).map((run) => run.step), [1], 'consecutive through every swap');
    assert.equal(kernel.strayReplies, 0);
    const [status] = await kernel.status();
    assert.equal(status!.callsServed, sorted.length, 'every call served reached a caller');
  } finally {
    await kernel.stop();
  }
});

test('a spare runs with the flags, limits and environment of a fresh worker; one started before the environment changed is not handed out', async () => {
  const marker = 'THESEUS_TEST_SPARE_MARKER';
  process.env[marker] = 'before';
  const kernel = await Kernel.start({ release: '1.0.0', services: { facts: { entry: fixture('thread-facts'), config: { round: 1 } } }, onLog: logCollector().onLog });
  type Facts = { threadId: number; execArgv: string[]; resourceLimits: unknown; marker: string | null; envKeys: string[]; round: number; calls: number };
  const facts = () => kernel.client<{ facts(): Promise<Facts> }>('facts').facts();
  try {
    // Booted from nothing at start; the swap's new worker is the spare.
    const fresh = await facts();
    const spare = await readySpare(kernel);
    await kernel.upgrade({ release: '1.0.1', services: { facts: { entry: fixture('thread-facts'), config: { round: 2 } } } });
    const fromSpare = await facts();
    assert.equal(fromSpare.threadId, spare, 'the new worker was the spare');
    assert.notEqual(fromSpare.threadId, fresh.threadId);
    assert.equal(fromSpare.round, 2, "the spare loaded the new release's settings");
    assert.equal(fromSpare.calls, 2, 'the state came along');
    assert.deepEqual(
      { execArgv: fromSpare.execArgv, resourceLimits: fromSpare.resourceLimits, marker: fromSpare.marker, envKeys: fromSpare.envKeys },
      { execArgv: fresh.execArgv, resourceLimits: fresh.resourceLimits, marker: fresh.marker, envKeys: fresh.envKeys },
    );

    // The environment changes while a spare waits: that spare copied the old one, so the swap
    // boots a thread that sees the new one instead.
    const stale = await readySpare(kernel);
    process.env[marker] = 'after';
    await kernel.upgrade({ release: '1.0.2', services: { facts: { entry: fixture('thread-facts'), config: { round: 3 } } } });
    const afterChange = await facts();
    assert.notEqual(afterChange.threadId, stale, 'the stale spare was not handed out');
    assert.equal(afterChange.marker, 'after');
    assert.equal(afterChange.calls, 3);
  } finally {
    delete process.env[marker];
    await kernel.stop();
  }
});

test('a spare whose thread ends while it waits is replaced and never handed out; the next swap works', async () => {
  // One spare dies soon after it is ready: the first to remove this file. Every worker of this
  // kernel has the same environment, so only the spare's death can keep it from being handed out.
  const dir = await mkdtemp(join(tmpdir(), 'theseus-spare-'));
  await writeFile(join(dir, 'doomed'), '');
  process.env.THESEUS_FAULTS = `spare-exits-idle:${join(dir, 'doomed')}`;
  // A short boot timeout: a dead thread handed out would never say it loaded.
  const kernel = await Kernel.start({ ...sequenceRelease('0.1.0'), bootTimeoutMs: 3000, onLog: logCollector().onLog });
  try {
    const [doomed] = kernel.spareWorkers.threadIds;
    assert.ok(doomed !== undefined, 'the kernel started a spare');
    await waitUntil('the spare to die while it waits', () => kernel.spareWorkers.diedIdle === 1);
    const load = startSequenceLoad(kernel, { callers: 50, ports: 10, inFlight: 2 });
    await waitForCalls(load, 500);
    // At once: its replacement may still be booting, and then the swap boots a thread of its own.
    const report = await kernel.upgrade(sequenceRelease('0.2.0'));
    assert.equal(report.outcome, 'switched');
    assert.notDeepEqual(kernel.threadIds, [doomed], 'the dead spare was not handed out');
    await waitForCalls(load, 500);
    const { problems } = checkSequenceInvariants(await load.stop());
    assert.deepEqual(problems, []);
    const replacement = await readySpare(kernel);
    assert.ok(replacement !== doomed && !kernel.threadIds.includes(replacement), 'a live spare took its place');
    assert.equal(kernel.spareWorkers.diedIdle, 1);
  } finally {
    await kernel.stop();
    delete process.env.THESEUS_FAULTS;
    await rm(dir, { recursive: true, force: true });
  }
});

test("supervision's restart of a crashed worker takes the spare, which is replaced", async () => {
  const kernel = await Kernel.start({ release: '1.0.0', services: { crasher: { entry: fixture('crasher') } }, checkpointIntervalMs: 0, onLog: logCollector().onLog });
  const crasher = kernel.client<{ work(ms: number): Promise<number>; armCrash(ms: number): Promise<number> }>('crasher');
  try {
    assert.equal(await crasher.work(1), 1);
    await kernel.checkpoint();
    const spare = await readySpare(kernel);
    await crasher.armCrash(1);
    await waitUntil('the restart', async () => (await kernel.status())[0]!.restarts === 1 && kernel.threadIds[0] !== undefined && (await kernel.status())[0]!.state === 'running');
    assert.deepEqual(kernel.threadIds, [spare], 'the restarted worker is the spare');
    assert.equal(await crasher.work(1), 2, 'from its last state');
    const replacement = await readySpare(kernel);
    assert.notEqual(replacement, spare);
  } finally {
    await kernel.stop();
  }
});

test('stop ends the spares: no thread is left', async () => {
  const before = await osThreadCount();
  const kernel = await Kernel.start({ ...sequenceRelease('0.1.0'), spareWorkers: 2, onLog: logCollector().onLog });
  await waitUntil('two ready spares', () => kernel.spareWorkers.ready === 2);
  assert.ok((await osThreadCount()) >= before + 3, 'the service and two spares each have a thread');
  await kernel.stop();
  assert.ok((await osThreadCount()) <= before, `threads grew from ${before} to ${await osThreadCount()} after stop`);
});

test("the swap path through the kernel (the bench's old path) keeps the invariants: up and down under callers", async () => {
  const logs = logCollector();
  const kernel = await Kernel.start({ ...sequenceRelease('0.2.0'), swapPath: 'through-kernel', onLog: logs.onLog });
  try {
    assert.equal(kernel.spareWorkers.wanted, 0, 'no spare on the old path');
    const load = startSequenceLoad(kernel, { callers: 200, ports: 20, inFlight: 2 });
    await waitForCalls(load, 1000);
    const up = await kernel.upgrade(sequenceRelease('0.3.0'));
    assert.match(up.services[0]!.migration, /0 -> 1 \(up, in 0\.3\.0\)/);
    await waitForCalls(load, 1000);
    const down = await kernel.downgrade(sequenceRelease('0.2.0'));
    assert.match(down.services[0]!.migration, /1 -> 0 \(down, in 0\.3\.0\)/);
    await waitForCalls(load, 1000);
    const { sorted, problems } = checkSequenceInvariants(await load.stop());
    assert.deepEqual(problems, []);
    assert.equal(sorted[0], 456);
    assert.deepEqual(stepRuns(sorted).map((run) => run.step), [1]);
    assert.equal(kernel.spareWorkers.threadIds.length, 0);
    // The pause's steps show the state's way: the kernel kept its copy and sent it in migrate.
    const steps = logs.records.filter((r) => r.message === 'sequence pause steps').map((r) => Object.keys(r.data as object));
    assert.equal(steps.length, 2);
    for (const names of steps) assert.ok(names.includes('copyKept') && names.includes('migrateSent'), `steps: ${names.join(', ')}`);
    // One swap on the direct path in the same kernel: no copy on the main thread.
    await kernel.upgrade({ ...sequenceRelease('0.3.0'), swapPath: 'direct' });
    const direct = logs.records.filter((r) => r.message === 'sequence pause steps').map((r) => Object.keys(r.data as object)).at(-1)!;
    assert.ok(!direct.includes('copyKept') && direct.includes('adopted'), `steps: ${direct.join(', ')}`);
  } finally {
    await kernel.stop();
  }
});

test('spareWorkers in theseus.config.ts: 1 by default, 0 turns spares off, a count that is not a small whole number is refused naming the key', async () => {
  const app = await mkdtemp(join(tmpdir(), 'theseus-spare-config-'));
  try {
    await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'x', version: '1.0.0', type: 'module' }));
    await writeFile(join(app, 'a.ts'), 'export default {};\n');
    const config = async (extra: string) => {
      await writeFile(join(app, 'theseus.config.ts'), `export default { app: 'x', services: { a: { entry: './a.ts' } }${extra} };\n`);
      return loadReleaseConfig(join(app, 'theseus.config.ts'));
    };
    assert.equal((await config('')).spareWorkers, 1);
    assert.equal((await config(', spareWorkers: 0')).spareWorkers, 0);
    for (const bad of ['-1', '1.5', "'2'", '100']) {
      await assert.rejects(config(`, spareWorkers: ${bad}`), (error: Error & { code?: string }) => {
        assert.equal(error.code, 'E_CONFIG_INVALID');
        assert.match(error.message, /\/spareWorkers/);
        return true;
      });
    }
  } finally {
    await rm(app, { recursive: true, force: true });
  }
});
