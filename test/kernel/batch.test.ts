// Batched calls (FRAME_BATCH): several calls in one message, run by the service one after another
// as if each had come alone. The HTTP front door sends everything that arrives in one turn this
// way; these tests hold the batch itself to the kernel's rules.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Kernel, type ClientOf } from '../../kernel/index.ts';
import { deserializeError } from '../../kernel/common/errors.ts';
import { REPLY_ERROR, REPLY_OK, type BatchedResult } from '../../kernel/common/protocol.ts';
import { HttpFrontDoor } from '../../kernel/main/http-front-door.ts';
import type counter from '../fixtures/services/counter-v1.ts';
import { fixture, logCollector, sequenceEntry } from '../helpers.ts';
import { oneListener, send } from '../http/helpers.ts';

const okValue = (result: BatchedResult) => {
  assert.equal(result[0], REPLY_OK, result[0] === REPLY_ERROR ? result[1].message : '');
  return result[1];
};

test('a batch runs in order, each call on the state the previous one left; one failing call fails alone', async () => {
  const kernel = await Kernel.start({ release: '1', services: { counter: { entry: fixture('counter-v1') } }, ...logCollector() });
  try {
    const client = kernel.client<ClientOf<typeof counter>>('counter');
    const before = client.add(10);
    const batch = kernel.callBatch('counter', [['add', [1]], ['get'], ['noSuchCall'], ['add', [2]]]);
    const after = client.get();
    assert.equal(await before, 10);
    const results = await batch;
    assert.equal(okValue(results[0]!), 11);
    assert.equal(okValue(results[1]!), 11);
    assert.equal(results[2]![0], REPLY_ERROR);
    assert.equal(deserializeError(results[2]![1] as never).code, 'E_UNKNOWN_METHOD');
    assert.equal(okValue(results[3]!), 13);
    // Sent after the batch on the same port: it sees everything the batch did.
    assert.equal(await after, 13);
  } finally {
    await kernel.stop();
  }
});

test('async handlers in a batch still run one at a time, in order', async () => {
  const kernel = await Kernel.start({ release: '1', services: { crasher: { entry: fixture('crasher') } }, ...logCollector() });
  try {
    const results = await kernel.callBatch('crasher', [['work', [30]], ['work', [1]], ['work', [10]]]);
    assert.deepEqual(results.map(okValue), [1, 2, 3]);
  } finally {
    await kernel.stop();
  }
});

test('a worker that dies during a batch fails the calls that had started; the rest run on the restarted worker', async () => {
  const kernel = await Kernel.start({ release: '1', services: { crasher: { entry: fixture('crasher') } }, ...logCollector() });
  try {
    const client = kernel.client<{ armCrash(ms: number): Promise<number> }>('crasher');
    // The first call ends fast, the second is still running when the thread dies in 150 ms.
    await client.armCrash(150);
    const results = await kernel.callBatch('crasher', [['work', [1]], ['work', [2000]], ['work', [1]], ['work', [1]]]);
    assert.deepEqual(
      results.map((result) => (result[0] === REPLY_OK ? 'ok' : deserializeError(result[1] as never).code)),
      ['E_SERVICE_DOWN', 'E_SERVICE_DOWN', 'ok', 'ok'],
      'the two started calls failed (their replies died with the worker); the two that never started ran once, after the restart',
    );
    // They ran on the restarted worker, whose state came back from its last checkpoint (none: init).
    assert.deepEqual([okValue(results[2]!), okValue(results[3]!)], [1, 2]);
  } finally {
    await kernel.stop();
  }
});

test('batches from many callers through swaps: every number once, none lost, no call inside a batch', async () => {
  const kernel = await Kernel.start({ release: '0.1.0', services: { sequence: { entry: sequenceEntry('0.1.0') } }, ...logCollector() });
  try {
    const numbers: number[] = [];
    let stopping = false;
    const parse = (reply: unknown) => (typeof reply === 'number' ? reply : Number(/(\d+)$/.exec(String(reply))![1]));
    const callers = Array.from({ length: 20 }, async (_, index) => {
      while (!stopping) {
        const size = 1 + (index % 7);
        const results = await kernel.callBatch('sequence', Array.from({ length: size }, () => ['nextNumber'] as [string]));
        const mine = results.map((result) => parse(okValue(result)));
        for (let i = 1; i < mine.length; i++) assert.equal(mine[i], mine[i - 1]! + 1, 'a batch runs without another call in between');
        numbers.push(...mine);
      }
    });
    for (let swap = 0; swap < 6; swap++) {
      const version = swap % 2 === 0 ? '0.2.0' : '0.1.0';
      await kernel.upgrade({ release: version, services: { sequence: { entry: sequenceEntry(version) } } });
    }
    stopping = true;
    await Promise.all(callers);
    numbers.sort((a, b) => a - b);
    assert.ok(numbers.length > 200, `${numbers.length} numbers`);
    assert.deepEqual(numbers, Array.from({ length: numbers.length }, (_, i) => 456 + i));
  } finally {
    await kernel.stop();
  }
});

test('an HTTP route to a pooled service: the pool answers, and a swap of the pool keeps it answering', async () => {
  const kernel = await Kernel.start({ release: '1.0.0', services: { maths: { entry: fixture('pooled-v1'), pool: { size: 2 } } }, ...logCollector() });
  const door = new HttpFrontDoor({ callBatch: (service, calls, encoding) => kernel.callBatch(service, calls, encoding), concurrent: (service) => kernel.isPooled(service), log: () => undefined });
  try {
    await door.apply(
      oneListener(
        [
          { method: 'GET', path: '/fib', service: 'maths', handler: 'httpFib' },
          { method: 'GET', path: '/slow', service: 'maths', handler: 'httpSlow' },
        ],
        { maxBodyBytes: 1024, maxReplyBytes: 1024, requestTimeoutMs: 10_000 },
      ),
    );
    const port = door.stats().listeners[0]!.port;
    const first = await send(port, 'GET', '/fib?n=20');
    assert.equal(first.status, 200);
    assert.deepEqual(first.json(), { fib: 6765, release: '1.0.0' });
    assert.equal(first.headers['x-code'], 'v1');
    // Slow requests still running in the old pool when the new one takes over: the old pool
    // finishes them before it closes.
    const during = Array.from({ length: 20 }, () => send(port, 'GET', '/slow?ms=400'));
    await new Promise((resolve) => setTimeout(resolve, 50));
    await kernel.upgrade({ release: '1.1.0', services: { maths: { entry: fixture('pooled-v2'), pool: { size: 2 } } } });
    const replies = await Promise.all(during);
    for (const reply of replies) assert.equal(reply.status, 200);
    assert.ok(replies.every((reply) => reply.json().code === 'v1'), 'the old code answered the requests it had started');
    const next = await send(port, 'GET', '/fib?n=10');
    assert.equal(next.headers['x-code'], 'v2');
    assert.equal(next.json().fib, 55);
  } finally {
    await door.close();
    await kernel.stop();
  }
});
