// Swaps under overload. The service's handlers await 0-5 ms, one at a time, so 1000 callers keep a
// backlog of hundreds of messages inside its worker. A suspend must wait for the one running
// handler only: the backlog moves to the new worker with the ports (or back to the old one on a
// roll-back), in order, so a short drain timeout still lets every swap commit. Each caller numbers
// its casts and calls, and the service counts any that arrive out of that order.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Kernel, SwapError, type SwapReport } from '../../kernel/index.ts';
import { fixture, logCollector, waitForCalls } from '../helpers.ts';

interface BacklogApi {
  next(caller: string, seq: number): Promise<{ n: number; label: string; release: string }>;
  note(caller: string, seq: number): void;
  summary(): Promise<{ next: number; outOfOrder: number; casts: number; callers: number }>;
}

const CALLERS = 1000;
const PORTS = 50;
const DRAIN_TIMEOUT_MS = 300;

const release = (version: string, entry: string) => ({ release: version, services: { backlog: { entry: fixture(entry) } } });

/** Each caller alternates a cast and a call on a shared dedicated port, numbering both. */
function startLoad(kernel: Kernel) {
  const clients = Array.from({ length: PORTS }, () => kernel.client<BacklogApi>('backlog', { dedicated: true }));
  const replies: Array<Array<{ n: number; label: string; release: string }>> = Array.from({ length: CALLERS }, () => []);
  const failures: unknown[] = [];
  let casts = 0;
  let calls = 0;
  let stopping = false;
  const loops = replies.map(async (record, index) => {
    const client = clients[index % PORTS]!;
    const caller = `c${index}`;
    let seq = 0;
    while (!stopping && failures.length === 0) {
      client.note(caller, ++seq);
      casts++;
      calls++;
      try {
        record.push(await client.next(caller, ++seq));
      } catch (error) {
        failures.push(error);
      }
    }
  });
  return {
    answered: () => replies.reduce((sum, record) => sum + record.length, 0),
    failures: () => failures,
    async stop() {
      stopping = true;
      await Promise.all(loops);
      return { replies, failures, casts, calls, summary: await clients[0]!.summary() };
    },
  };
}

function checkInvariants(result: Awaited<ReturnType<ReturnType<typeof startLoad>['stop']>>): number[] {
  assert.deepEqual(result.failures.map(String), [], 'no call failed');
  const all = result.replies.flat().map((reply) => reply.n);
  assert.equal(all.length, result.calls, 'every call was answered');
  result.replies.forEach((record, caller) => {
    for (let i = 1; i < record.length; i++) assert.ok(record[i]!.n > record[i - 1]!.n, `caller ${caller} got ${record[i]!.n} after ${record[i - 1]!.n}`);
  });
  const sorted = [...all].sort((a, b) => a - b);
  sorted.forEach((n, index) => assert.equal(n, index + 1, `numbers are consecutive from 1 and none is repeated (at ${index})`));
  assert.equal(result.summary.outOfOrder, 0, 'no cast or call reached the service out of its caller order');
  assert.equal(result.summary.casts, result.casts, 'every cast ran exactly once');
  assert.equal(result.summary.next, all.length + 1, 'the state counted exactly the calls answered');
  return sorted;
}

test('1000 callers, handlers that await, a 300 ms drain timeout, 50 swaps up and down: every swap commits, and nothing is lost, repeated or reordered', async () => {
  const logs = logCollector();
  const kernel = await Kernel.start({ ...release('1.0.0', 'backlog-a'), drainTimeoutMs: DRAIN_TIMEOUT_MS, onLog: logs.onLog });
  try {
    const load = startLoad(kernel);
    await waitForCalls(load, 200);
    const reports: SwapReport[] = [];
    for (let swap = 0; swap < 50; swap++) {
      // Up to 1.1.0 (code b), down to 1.0.0 (code a), and again.
      reports.push(swap % 2 === 0 ? await kernel.upgrade(release('1.1.0', 'backlog-b')) : await kernel.downgrade(release('1.0.0', 'backlog-a')));
      await waitForCalls(load, 50);
    }
    const result = await load.stop();
    checkInvariants(result);
    assert.deepEqual(
      reports.map((report) => report.outcome),
      reports.map(() => 'switched'),
      'every swap committed',
    );
    const services = reports.map((report) => report.services[0]!);
    const carried = services.map((service) => service.carried);
    // The point of the test: the swaps happened with a backlog, and it moved instead of draining.
    assert.ok(carried.filter((count) => count > 0).length >= 25, `most swaps carried a backlog over (carried: ${carried.join(', ')})`);
    for (const service of services) {
      assert.ok(service.drainMs <= service.pauseMs, 'the drain is part of the pause');
      assert.ok(service.drainMs <= DRAIN_TIMEOUT_MS, 'the drain waited for one handler at most');
    }
    // The last swap went down to 1.0.0: the calls answered last ran on its code.
    const last = result.replies.flat().reduce((latest, reply) => (reply.n > latest.n ? reply : latest));
    assert.equal(`${last.label}@${last.release}`, 'a@1.0.0');
  } finally {
    await kernel.stop();
  }
});

test('a swap that rolls back with a backlog: the queued messages go back to the old worker and run once, in order, on the old code', async () => {
  const logs = logCollector();
  const kernel = await Kernel.start({ ...release('1.0.0', 'backlog-a'), drainTimeoutMs: DRAIN_TIMEOUT_MS, onLog: logs.onLog });
  try {
    const load = startLoad(kernel);
    await waitForCalls(load, 200);
    const carriedBack: number[] = [];
    // Each attempt suspends the old worker, takes its backlog, then fails in the new code's
    // migration and hands everything back. A few attempts, so at least one has a real backlog.
    for (let attempt = 0; attempt < 10 && carriedBack.filter((count) => count > 0).length < 3; attempt++) {
      const error = await kernel.upgrade(release('2.0.0', 'backlog-migration-throws')).then(
        () => assert.fail('the swap should have rolled back'),
        (caught: unknown) => caught,
      );
      assert.ok(error instanceof SwapError);
      assert.equal(error.code, 'E_MIGRATION_FAILED');
      assert.equal(error.report.outcome, 'rolled-back');
      carriedBack.push(error.report.services[0]!.carried);
      await waitForCalls(load, 50);
    }
    assert.ok(carriedBack.some((count) => count > 0), `a roll-back handed a backlog back (carried: ${carriedBack.join(', ')})`);
    const result = await load.stop();
    checkInvariants(result);
    const labels = new Set(result.replies.flat().map((reply) => `${reply.label}@${reply.release}`));
    assert.deepEqual([...labels], ['a@1.0.0'], 'every message ran on the old code');
  } finally {
    await kernel.stop();
  }
});
