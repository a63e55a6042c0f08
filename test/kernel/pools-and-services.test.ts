// Pools and stateful services calling each other, through swaps of either side, under load: a
// stateful service that uses a pool (each call a task on whichever pool generation serves), and a
// pooled service that uses a stateful one (each pool thread calls it through the main thread). No
// call is lost, failed or answered twice: the stateful side numbers every call it serves, and the
// numbers seen are consecutive.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Kernel } from '../../kernel/index.ts';
import { fixture, logCollector, waitUntil } from '../helpers.ts';

const pool = (name: string, size = 3) => ({ entry: fixture(name), pool: { size } });
const stateful = (name: string) => ({ entry: fixture(name) });

/** `callers` loops each calling `call(tag)` back to back until stopped; every reply is kept. */
function startLoad<T>(callers: number, call: (tag: number) => Promise<T>) {
  const replies: T[] = [];
  const failures: unknown[] = [];
  let stopping = false;
  let issued = 0;
  let finished = 0;
  Array.from({ length: callers }, async () => {
    while (!stopping) {
      const tag = issued++;
      try {
        replies.push(await call(tag));
      } catch (error) {
        failures.push(error);
        stopping = true;
      }
    }
    finished++;
  });
  const more = async (count: number) => {
    const target = replies.length + count;
    await waitUntil(`${count} more answered calls`, () => {
      if (failures.length > 0) throw new Error(`a call failed: ${String(failures[0])}`, { cause: failures[0] });
      return replies.length >= target;
    });
  };
  return {
    replies,
    more,
    async stop() {
      stopping = true;
      // A call that never comes back fails the wait, not the whole run.
      await waitUntil(`all ${callers} callers to have their last answer`, () => finished === callers);
      return { replies, failures, issued };
    },
  };
}

/**
 * Runs each swap after the load has had 100 more answers, and 100 more after the last; stops the
 * load whatever happened, and checks that every call was answered, none failed.
 */
async function swapsUnderLoad<T>(load: ReturnType<typeof startLoad<T>>, swaps: Array<() => Promise<unknown>>): Promise<T[]> {
  let stopped: Awaited<ReturnType<typeof load.stop>>;
  try {
    for (const swap of swaps) {
      await load.more(100);
      await swap();
    }
    await load.more(100);
  } finally {
    stopped = await load.stop();
  }
  assert.deepEqual(stopped.failures, []);
  assert.equal(stopped.replies.length, stopped.issued, 'every call answered');
  return stopped.replies;
}

/** 1..n, each once: the numbers a stateful service gave the calls it served. */
function assertConsecutive(numbers: number[], what: string): void {
  const sorted = [...numbers].sort((a, b) => a - b);
  assert.deepEqual(sorted, Array.from({ length: sorted.length }, (_, i) => i + 1), `${what}: every call numbered once, none lost or doubled`);
}

test('a stateful service calls a pool through swaps of the pool, of itself, and of both at once', async () => {
  const kernel = await Kernel.start({ release: '1.0.0', services: { hasher: pool('pooled-v1'), caller: stateful('pool-caller-v1') }, onLog: logCollector().onLog });
  const clients = Array.from({ length: 4 }, () => kernel.client<{ viaPool(tag: number): Promise<{ count: number; code: string; poolCode: string }> }>('caller', { dedicated: true }));
  const load = startLoad(12, (tag) => clients[tag % 4]!.viaPool(tag));
  try {
    const replies = await swapsUnderLoad(load, [
      () => kernel.upgrade({ release: '1.0.1', services: { hasher: pool('pooled-v2') } }),
      () => kernel.upgrade({ release: '1.0.2', services: { caller: stateful('pool-caller-v2') } }),
      () => kernel.upgrade({ release: '1.0.3', services: { hasher: pool('pooled-v1'), caller: stateful('pool-caller-v1') } }),
    ]);
    assertConsecutive(
      replies.map((reply) => reply.count),
      'the caller',
    );
    const seen = new Set(replies.map((reply) => `${reply.code}/${reply.poolCode}`));
    for (const pair of ['v1/v1', 'v1/v2', 'v2/v2']) assert.ok(seen.has(pair), `calls answered by caller ${pair.split('/')[0]} and pool ${pair.split('/')[1]}`);
  } finally {
    await kernel.stop();
  }
});

test('a pooled service calls a stateful one through swaps of the pool, of the stateful service, and of both at once', async () => {
  const kernel = await Kernel.start({ release: '1.0.0', services: { counter: stateful('counter-v1'), bumper: pool('pooled-counter-user-v1') }, onLog: logCollector().onLog });
  const bumper = kernel.client<{ bump(): Promise<{ total: number; code: string }> }>('bumper');
  const load = startLoad(12, () => bumper.bump());
  try {
    const replies = await swapsUnderLoad(load, [
      () => kernel.upgrade({ release: '1.0.1', services: { bumper: pool('pooled-counter-user-v2') } }),
      // The counter's state gains a field (vsn 0 -> 1): the pool's calls wait through the migration.
      () => kernel.upgrade({ release: '1.0.2', services: { counter: stateful('counter-v2') } }),
      () => kernel.downgrade({ release: '1.0.0', services: { bumper: pool('pooled-counter-user-v1'), counter: stateful('counter-v1') } }),
    ]);
    assertConsecutive(
      replies.map((reply) => reply.total),
      'the counter',
    );
    assert.equal(await kernel.client<{ get(): Promise<number> }>('counter').get(), replies.length, 'the counter counted each call once');
    assert.deepEqual(new Set(replies.map((reply) => reply.code)), new Set(['v1', 'v2']));
    // The pool still uses the counter: a release without it is refused, and both serve on.
    await assert.rejects(kernel.upgrade({ release: '1.0.4', complete: true, services: { bumper: pool('pooled-counter-user-v1') } }), { code: 'E_REMOVED_STILL_USED', phase: 'check' });
    assert.equal((await bumper.bump()).total, replies.length + 1);
  } finally {
    await kernel.stop();
  }
});

test('a whole release adds a pool that a swapped service starts using, and a later one removes both again', async () => {
  const kernel = await Kernel.start({ release: '1.0.0', services: { counter: stateful('counter-v1') }, onLog: logCollector().onLog });
  try {
    const added = await kernel.upgrade({ release: '1.1.0', complete: true, services: { counter: stateful('counter-v1'), hasher: pool('pooled-v1', 2), caller: stateful('pool-caller-v1') } });
    assert.deepEqual(
      added.services.map((s) => [s.service, s.change, s.outcome]).sort(),
      [
        ['caller', 'added', 'switched'],
        ['counter', 'none', 'unchanged'],
        ['hasher', 'added', 'switched'],
      ],
    );
    const caller = kernel.client<{ viaPool(tag: number): Promise<{ count: number; poolCode: string }> }>('caller');
    assert.deepEqual(await caller.viaPool(1), { count: 1, code: 'v1', poolCode: 'v1' });
    // The pool cannot go while the caller uses it.
    await assert.rejects(kernel.upgrade({ release: '1.2.0', complete: true, services: { counter: stateful('counter-v1'), caller: stateful('pool-caller-v1') } }), { code: 'E_REMOVED_STILL_USED' });
    assert.equal(kernel.poolThreadIds('hasher').length, 2);
    const hasher = kernel.client<{ fib(n: number): Promise<number> }>('hasher');
    await kernel.upgrade({ release: '1.2.0', complete: true, services: { counter: stateful('counter-v1') } });
    assert.deepEqual(kernel.services, ['counter']);
    assert.throws(() => kernel.client('hasher'), { code: 'E_SERVICE_REMOVED' });
    await assert.rejects(hasher.fib(3), { code: 'E_SERVICE_DOWN' });
  } finally {
    await kernel.stop();
  }
});
