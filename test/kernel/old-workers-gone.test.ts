// After a swap the old code must really be gone: its thread has exited (an ES module cannot be
// unloaded from a live isolate, so only the end of the thread frees it), and the number of live
// threads is back where it was.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Kernel } from '../../kernel/index.ts';
import { fixture, logCollector, osThreadCount, sequenceRelease, type SequenceApi } from '../helpers.ts';

test('each swap ends the old worker thread; the worker count returns to N', async () => {
  const kernel = await Kernel.start({
    release: '1.0.0',
    services: { sequence: { entry: sequenceRelease('0.1.0').services.sequence.entry }, counter: { entry: fixture('counter-v1') } },
    onLog: logCollector().onLog,
  });
  try {
    const seq = kernel.client<SequenceApi>('sequence');
    // One swap first, so lazily created helper threads (libuv's pool, esbuild's) already exist.
    await kernel.upgrade({ release: '1.0.1', services: { sequence: { entry: sequenceRelease('0.2.0').services.sequence.entry } } });
    const baseline = await osThreadCount();
    const seen = new Set<number>(kernel.threadIds);
    for (let i = 0; i < 10; i++) {
      const version = i % 2 === 0 ? '0.1.0' : '0.2.0';
      await kernel.upgrade({ release: `1.0.${i + 2}`, services: { sequence: { entry: sequenceRelease(version).services.sequence.entry } } });
      await seq.nextNumber();
      for (const id of kernel.threadIds) seen.add(id);
      assert.equal(kernel.threadIds.length, 2, 'the kernel tracks exactly one worker per service');
      assert.ok((await osThreadCount()) <= baseline, `OS threads grew from ${baseline} to ${await osThreadCount()} after swap ${i + 1}`);
    }
    assert.equal(seen.size, 12, 'every swap ran the new code in a new thread');
  } finally {
    await kernel.stop();
  }
});

test('after stop, no service thread is left', async () => {
  const before = await osThreadCount();
  const kernel = await Kernel.start({ ...sequenceRelease('0.1.0'), onLog: logCollector().onLog });
  assert.ok((await osThreadCount()) > before, 'the service runs in a thread of its own');
  await kernel.stop();
  assert.ok((await osThreadCount()) <= before);
});
