// Callers that arrive while a swap is moving the ports: a new client's port is held by the kernel
// and handed to whichever worker ends up serving (the new one on switch, the old one on rollback).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Kernel, closeClient } from '../../kernel/index.ts';
import { checkSequenceInvariants, fixture, logCollector, parseSequenceReply, sequenceRelease, type SequenceApi } from '../helpers.ts';

test('new callers keep arriving through committed and rolled-back swaps, and every one is answered', async () => {
  const kernel = await Kernel.start({ ...sequenceRelease('0.1.0'), onLog: logCollector().onLog });
  const perCaller: number[][] = [];
  const failures: unknown[] = [];
  let calls = 0;
  let stop = false;
  // Each churner opens a fresh dedicated client for every few calls.
  const churners = Array.from({ length: 20 }, async () => {
    while (!stop) {
      const client = kernel.client<SequenceApi>('sequence', { dedicated: true });
      const mine: number[] = [];
      perCaller.push(mine);
      for (let i = 0; i < 3 && !stop; i++) {
        calls++;
        try {
          mine.push(parseSequenceReply(await client.nextNumber()));
        } catch (error) {
          failures.push(error);
          stop = true;
        }
      }
      // Closing while a swap may hold the service's end of the port must not disturb the swap.
      closeClient(client);
    }
  });
  try {
    for (let round = 0; round < 8; round++) {
      await kernel.upgrade(sequenceRelease(round % 2 === 0 ? '0.2.0' : '0.1.0'));
      // A swap that fails in migrate, after the ports were handed over: held callers go back to the old worker.
      await assert.rejects(kernel.upgrade({ release: '0.9.0', services: { sequence: { entry: fixture('sequence-migration-throws') } } }), {
        code: 'E_MIGRATION_FAILED',
      });
    }
  } finally {
    stop = true;
    await Promise.all(churners);
  }
  try {
    const { sorted, problems } = checkSequenceInvariants({ perCaller, failures, calls });
    assert.deepEqual(problems, []);
    assert.ok(perCaller.length > 100, `only ${perCaller.length} clients were opened`);
    for (let i = 1; i < sorted.length; i++) assert.equal(sorted[i]! - sorted[i - 1]!, 1);
    // The closed clients' ports were dropped by the service: no stray callers left in the kernel.
    const client = kernel.client<SequenceApi>('sequence', { dedicated: true });
    closeClient(client);
    await assert.rejects(client.nextNumber(), { code: 'E_SERVICE_DOWN' });
  } finally {
    await kernel.stop();
  }
});
