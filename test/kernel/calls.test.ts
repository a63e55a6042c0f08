// What a caller sees when a call goes wrong: one call rejects with a clear, coded error and the
// service keeps running with the state it had before that call.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Kernel, TheseusError } from '../../kernel/index.ts';
import { fixture, logCollector, osThreadCount, sequenceRelease, waitUntil, type SequenceApi } from '../helpers.ts';

interface MisbehavingApi {
  get(): Promise<number>;
  set(value: unknown): Promise<number>;
  throws(): Promise<never>;
  rejects(): Promise<never>;
  throwsAfterChange(): Promise<never>;
  replyNotCloneable(): Promise<never>;
  noReplyField(): Promise<never>;
  castThrows(): void;
  missing(): Promise<never>;
}

test('handler failures reject that one call with its message and code; the state is as before', async () => {
  const logs = logCollector();
  const kernel = await Kernel.start({ release: '1.0.0', services: { ledger: { entry: fixture('misbehaving') } }, onLog: logs.onLog });
  try {
    const ledger = kernel.client<MisbehavingApi>('ledger');
    await assert.rejects(ledger.throws(), { code: 'LEDGER_CLOSED', message: 'the ledger is closed' });
    await assert.rejects(ledger.rejects(), { code: 'E_HANDLER_FAILED', message: 'async failure' });
    await assert.rejects(ledger.throwsAfterChange(), { message: 'failed half way' });
    assert.equal(await ledger.get(), 1, 'a handler that threw changed nothing');

    const notCloneable = await ledger.replyNotCloneable().catch((error: unknown) => error);
    assert.ok(notCloneable instanceof TheseusError);
    assert.equal(notCloneable.code, 'E_REPLY_NOT_CLONEABLE');
    assert.match(notCloneable.message, /reply\.callback is a function/);
    assert.equal(await ledger.get(), 1, 'a reply that could not be sent changed nothing');

    await assert.rejects(ledger.noReplyField(), { code: 'E_BAD_HANDLER_RESULT' });
    await assert.rejects(ledger.missing(), (error: TheseusError) => {
      assert.equal(error.code, 'E_UNKNOWN_METHOD');
      assert.match(error.message, /no call or cast named 'missing'.*it has: get, set, throws/);
      return true;
    });

    // Arguments that cannot cross threads fail before they are sent, naming the path.
    await assert.rejects(ledger.set({ nested: { fn: () => 1 } }), (error: TheseusError) => {
      assert.equal(error.code, 'E_ARGS_NOT_CLONEABLE');
      assert.match(error.message, /args\[0\]\.nested\.fn is a function/);
      return true;
    });
    await assert.rejects(ledger.set(Symbol('x')), { code: 'E_ARGS_NOT_CLONEABLE' });

    // A cast has no caller to tell: its failure goes to the log, and the service keeps going.
    ledger.castThrows();
    assert.equal(await ledger.set(5), 1);
    assert.equal(await ledger.get(), 5);
    // Log lines travel on the worker's control channel, not the caller's port: wait for it.
    const findCastLog = () => logs.records.find((r) => r.level === 'error' && r.message.includes('castThrows'));
    await waitUntil('the failed cast to be logged', () => findCastLog() !== undefined);
    const castLog = findCastLog()!;
    assert.equal(castLog.service, 'ledger');
    assert.equal(castLog.release, '1.0.0');
  } finally {
    await kernel.stop();
  }
});

test('unknown services are refused with the list of running ones', async () => {
  const kernel = await Kernel.start({ ...sequenceRelease('0.1.0'), onLog: logCollector().onLog });
  try {
    assert.throws(() => kernel.client('sequense'), (error: TheseusError) => {
      assert.equal(error.code, 'E_UNKNOWN_SERVICE');
      assert.match(error.message, /running: sequence/);
      return true;
    });
  } finally {
    await kernel.stop();
  }
});

test('state that is not plain data is refused at init, naming the path', async () => {
  const threadsBefore = await osThreadCount();
  await assert.rejects(
    Kernel.start({ release: '1.0.0', services: { cache: { entry: fixture('bad-init-state') } }, onLog: logCollector().onLog }),
    (error: TheseusError) => {
      assert.equal(error.code, 'E_STATE_NOT_CLONEABLE');
      assert.match(error.message, /state\.cache is an instance of Cache/);
      return true;
    },
  );
  // Each worker is one OS thread: a refused start that left its worker running shows as one more.
  assert.equal(await osThreadCount(), threadsBefore, 'the refused service\'s worker thread is gone');
});

test('a module that is not a service is refused with what is wrong', async () => {
  await assert.rejects(
    Kernel.start({ release: '1.0.0', services: { helpers: { entry: `${fixture('x').replace(/services\/x\.ts$/, '')}not-a-service.ts` } }, onLog: logCollector().onLog }),
    (error: TheseusError) => {
      assert.equal(error.code, 'E_BOOT_FAILED');
      assert.match(error.message, /'vsn' must be a non-empty string/);
      return true;
    },
  );
});

test('after stop, calls reject at once instead of hanging', async () => {
  const kernel = await Kernel.start({ ...sequenceRelease('0.1.0'), onLog: logCollector().onLog });
  const seq = kernel.client<SequenceApi>('sequence');
  assert.equal(await seq.nextNumber(), 456);
  const settling = Promise.allSettled(Array.from({ length: 100 }, () => seq.nextNumber()));
  await kernel.stop();
  const settled = await settling;
  // Each call was either served before the stop or rejected; none hangs.
  for (const result of settled) {
    if (result.status === 'rejected') assert.equal((result.reason as TheseusError).code, 'E_SERVICE_DOWN');
  }
  await assert.rejects(seq.nextNumber(), { code: 'E_SERVICE_DOWN' });
  assert.throws(() => kernel.client('sequence'), { code: 'E_KERNEL_STOPPED' });
});
