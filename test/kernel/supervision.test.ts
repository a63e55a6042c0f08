// Supervision: a crashed service worker is restarted with its last state; the call it was
// handling fails, the calls queued behind it are served by the new worker, none hangs; and past
// the restart-intensity limit the service is marked failed.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Kernel, type TheseusError } from '../../kernel/index.ts';
import { fixture, logCollector, waitUntil } from '../helpers.ts';

interface CrasherApi {
  work(ms: number): Promise<number>;
  armCrash(ms: number): Promise<number>;
  armCrashOn(signal: Int32Array): Promise<number>;
}

/** Polls the service's counters until `ready` holds. */
async function waitForStats(kernel: Kernel, what: string, ready: (s: { inFlight: number; queued: number }) => boolean): Promise<void> {
  await waitUntil(`the service's counters to show ${what}`, async () => ready((await kernel.status())[0]!));
}

const settle = <T>(promise: Promise<T>) => promise.then((value) => ({ value }), (error: TheseusError) => ({ error }));

test('a crashed worker restarts with its last state; in-flight calls reject, queued calls are served', async () => {
  const logs = logCollector();
  const kernel = await Kernel.start({ release: '1.0.0', services: { crasher: { entry: fixture('crasher') } }, checkpointIntervalMs: 0, onLog: logs.onLog });
  try {
    const crasher = kernel.client<CrasherApi>('crasher');
    const dedicated = kernel.client<CrasherApi>('crasher', { dedicated: true });
    assert.equal(await crasher.work(1), 1);
    assert.equal(await crasher.work(1), 2);
    const signal = new Int32Array(new SharedArrayBuffer(4));
    assert.equal(await crasher.armCrashOn(signal), 2);
    // One call in flight, and two queued behind it (one per port), before anything crashes.
    const inFlight = settle(crasher.work(60_000));
    await waitForStats(kernel, 'one call in flight', (s) => s.inFlight === 1);
    const queued = [settle(crasher.work(1)), settle(dedicated.work(1))];
    await waitForStats(kernel, 'two calls queued', (s) => s.queued === 2);
    await kernel.checkpoint(); // the state the restart resumes from (kept in memory)
    Atomics.store(signal, 0, 1);
    Atomics.notify(signal, 0);
    const result = await inFlight;
    assert.equal((result as { error: TheseusError }).error?.code, 'E_SERVICE_DOWN', 'the call the worker was handling is rejected, not retried');
    // Queued behind it on both ports, never started: served by the restarted worker, in order.
    assert.deepEqual(await Promise.all(queued), [{ value: 3 }, { value: 4 }]);
    assert.equal(await crasher.work(1), 5);
    const [status] = await kernel.status();
    assert.deepEqual([status!.state, status!.restarts], ['running', 1]);
    assert.ok(logs.records.some((r) => r.level === 'info' && /crasher@1\.0\.0 restarted from its state of/.test(r.message)));
    assert.equal(kernel.strayReplies, 0);
  } finally {
    await kernel.stop();
  }
});

test('past the restart-intensity limit the service is marked failed, and nothing hangs', async () => {
  const logs = logCollector();
  const kernel = await Kernel.start({
    release: '1.0.0',
    services: { crasher: { entry: fixture('crasher') } },
    maxRestarts: 2,
    restartWindowMs: 60_000,
    onLog: logs.onLog,
  });
  try {
    const crasher = kernel.client<CrasherApi>('crasher');
    for (let crash = 1; crash <= 3; crash++) {
      const signal = new Int32Array(new SharedArrayBuffer(4));
      await crasher.armCrashOn(signal);
      const pending = settle(crasher.work(60_000));
      await waitForStats(kernel, 'one call in flight', (s) => s.inFlight === 1);
      Atomics.store(signal, 0, 1);
      Atomics.notify(signal, 0);
      const outcome = await pending;
      assert.equal((outcome as { error: TheseusError }).error?.code, 'E_SERVICE_DOWN');
      // Wait until supervision has acted on this crash.
      const expected = { state: crash < 3 ? 'running' : 'failed', restarts: Math.min(crash, 2) };
      await waitUntil(`supervision to act on crash ${crash} (${JSON.stringify(expected)})`, async () => {
        const [status] = await kernel.status();
        return status!.state === expected.state && status!.restarts === expected.restarts;
      }, { intervalMs: 20 });
    }
    const [status] = await kernel.status();
    assert.equal(status!.state, 'failed');
    assert.match(status!.failure ?? '', /restarted 2 times within 60000 ms, the limit/);
    await assert.rejects(crasher.work(1), { code: 'E_SERVICE_DOWN' });
    assert.ok(logs.records.some((r) => r.level === 'error' && /crasher@1\.0\.0 is marked failed/.test(r.message)));
  } finally {
    await kernel.stop();
  }
});

test('a service calling a crashed one gets a new channel to its restarted worker', async () => {
  const kernel = await Kernel.start({
    release: '1.0.0',
    services: { gateway: { entry: fixture('gateway-v1') }, counter: { entry: fixture('crasher-counter') } },
    checkpointIntervalMs: 0,
    onLog: logCollector().onLog,
  });
  try {
    const gateway = kernel.client<{ bump(n: number): Promise<number> }>('gateway');
    const counter = kernel.client<{ add(n: number): Promise<number>; armCrash(ms: number): Promise<number> }>('counter');
    assert.equal(await gateway.bump(3), 3);
    await kernel.checkpoint();
    await counter.armCrash(10);
    await new Promise((resolve) => setTimeout(resolve, 200));
    // The gateway's calls reach the restarted counter, which resumed at 3.
    assert.equal(await gateway.bump(2), 5);
    assert.equal(await counter.add(0), 5);
  } finally {
    await kernel.stop();
  }
});

test('the old worker crashes while draining: the swap rolls back and the old release is restarted and serves', async () => {
  const logs = logCollector();
  const kernel = await Kernel.start({
    release: '1.0.0',
    services: { crasher: { entry: fixture('crasher') } },
    checkpointIntervalMs: 0,
    drainTimeoutMs: 30_000,
    onLog: logs.onLog,
  });
  try {
    const crasher = kernel.client<CrasherApi>('crasher');
    assert.equal(await crasher.work(1), 1);
    await kernel.checkpoint();
    const signal = new Int32Array(new SharedArrayBuffer(4));
    await crasher.armCrashOn(signal);
    const inFlight = settle(crasher.work(60_000));
    await waitForStats(kernel, 'one call in flight', (s) => s.inFlight === 1);
    const swap = settle(kernel.upgrade({ release: '1.1.0', services: { crasher: { entry: fixture('crasher-counter') } } }));
    // Once the swap is draining (the old worker waits for its in-flight call), crash it.
    await waitUntil('the swap to be draining (suspending)', () => kernel.swapState === 'suspending');
    const queued = settle(crasher.work(1));
    Atomics.store(signal, 0, 1);
    Atomics.notify(signal, 0);
    const outcome = (await swap) as { error?: TheseusError & { phase?: string } };
    assert.equal(outcome.error?.phase, 'suspend');
    assert.equal(((await inFlight) as { error?: TheseusError }).error?.code, 'E_SERVICE_DOWN');
    assert.deepEqual(await queued, { value: 2 }, 'the call queued during the swap was served by the restarted old release');
    const [status] = await kernel.status();
    assert.deepEqual([status!.state, status!.release, status!.restarts], ['running', '1.0.0', 1]);
  } finally {
    await kernel.stop();
  }
});
