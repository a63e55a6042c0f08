// Found in review: in durability 'reply', when a failing disk made the held calls fail
// (E_STATE_NOT_DURABLE) and the state go back to the last one written, an async handler that was
// running at that moment had started from the state being undone, and its result, installed
// afterwards, brought the undone change back. The undo now waits for the running handler, whose
// reply then fails with the others. Driven in this thread, on a ServiceRuntime of its own, so the
// fault can be switched off again while the handler runs.

import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { FRAME_CALL, REPLY_ERROR, createLink, type ReplyFrame } from '../../kernel/common/protocol.ts';
import { defineService, type ServiceDefinition } from '../../kernel/service.ts';
import { ServiceRuntime } from '../../kernel/worker/service-runtime.ts';
import { tempDir } from '../release/helpers.ts';

test('a call undone by a failing disk stays undone, even with an async handler running when the state goes back', async () => {
  const definition = defineService({
    vsn: '1',
    init: () => ({ balance: 0, touched: 0 }),
    calls: {
      deposit: ({ state }, amount: number) => ({ reply: state.balance + amount, state: { ...state, balance: state.balance + amount } }),
      // Still running when the retries are spent (they take 10 + 100 + 1000 ms).
      touch: async ({ state }) => {
        await sleep(1500);
        return { reply: 'touched', state: { ...state, touched: state.touched + 1 } };
      },
      get: ({ state }) => ({ reply: state }),
    },
  });
  const runtime = new ServiceRuntime({
    service: 'ledger',
    release: '1.0.0',
    staticDir: null,
    config: {},
    checkpointEveryChanges: 0,
    onCheckpointDue: () => undefined,
    durableStateDir: await tempDir('theseus-undo-'),
    definition: definition as unknown as ServiceDefinition,
    emitLog: () => undefined,
  });
  const { caller, service } = createLink({ calls: ['deposit', 'touch', 'get'], casts: [] });
  const replies = new Map<number, (frame: ReplyFrame) => void>();
  caller.port.on('message', (frame: ReplyFrame) => replies.get(frame[0])?.(frame));
  let nextId = 1;
  const call = (method: string, ...args: unknown[]) => {
    const id = nextId++;
    const reply = new Promise<ReplyFrame>((resolve) => replies.set(id, resolve));
    caller.port.postMessage([FRAME_CALL, id, method, args]);
    return reply;
  };
  await runtime.start({ ports: { inbound: [service], outbound: {} } });
  // Let the first write (the state as adopted) land before the disk starts failing.
  await sleep(100);
  const previous = process.env.THESEUS_FAULTS;
  process.env.THESEUS_FAULTS = 'state-write';
  try {
    const deposit = call('deposit', 100);
    await sleep(5);
    const touch = call('touch');
    const deposited = await deposit;
    assert.equal(deposited[1], REPLY_ERROR);
    assert.equal((deposited[2] as { code: string }).code, 'E_STATE_NOT_DURABLE');
    // The disk is back; the handler that started from the undone state finishes.
    if (previous === undefined) delete process.env.THESEUS_FAULTS;
    else process.env.THESEUS_FAULTS = previous;
    const touched = await touch;
    assert.equal(touched[1], REPLY_ERROR, 'its change rested on the undone one, so it fails with it');
    const state = (await call('get'))[2] as { balance: number; touched: number };
    assert.deepEqual(state, { balance: 0, touched: 0 }, 'the failed deposit stays undone');
  } finally {
    if (previous === undefined) delete process.env.THESEUS_FAULTS;
    else process.env.THESEUS_FAULTS = previous;
    await runtime.stop({ runTerminate: false, reason: 'test', drainTimeoutMs: 2000, snapshot: false });
  }
});
