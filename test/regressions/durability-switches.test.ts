// Found in review of the durability work: a service switched from durability 'periodic' to
// 'reply' took over a state the disk did not hold (its last periodic checkpoint was older), and
// wrote nothing until its first change. A crash, or even a clean stop, before that change brought
// back the older checkpoint, and numbers already handed out were handed out again. The new worker
// now writes the state it took over before any reply leaves, and a restart takes the newer of the
// file and the kernel's own copy. Also: a kernel without a state folder refuses a swap to 'reply'.

import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { Kernel, type TheseusError } from '../../kernel/index.ts';
import { tempDir } from '../release/helpers.ts';
import { fixture, logCollector } from '../helpers.ts';

type CounterApi = { add(n: number): Promise<number>; label(): Promise<string>; armCrash(ms: number): Promise<number> };

const periodic = (release: string, version: 'a' | 'b') => ({ release, services: { counter: { entry: fixture(`durable-counter-${version}`) } } });
const reply = (release: string, version: 'a' | 'b') => ({ release, services: { counter: { entry: fixture(`durable-counter-${version}`), durability: 'reply' as const } } });

/** A kernel in 'periodic' whose checkpoint holds 5 while callers were told up to 10, switched to 'reply'. */
async function switchedToReply(stateDir: string): Promise<{ kernel: Kernel; counter: CounterApi }> {
  const kernel = await Kernel.start({ ...periodic('1.0.0', 'a'), stateDir, checkpointIntervalMs: 0, checkpointEveryChanges: 0, onLog: logCollector().onLog });
  const counter = kernel.client<CounterApi>('counter');
  for (let i = 0; i < 5; i++) await counter.add(1);
  await kernel.checkpoint();
  for (let i = 0; i < 5; i++) await counter.add(1);
  const report = await kernel.upgrade(reply('1.1.0', 'b'));
  assert.equal(report.services[0]!.outcome, 'switched');
  assert.equal(await counter.label(), 'b');
  return { kernel, counter };
}

test("periodic to 'reply', then a crash before any change: the restart resumes from what callers were told, not the older checkpoint", async () => {
  const { kernel, counter } = await switchedToReply(await tempDir('theseus-p2r-'));
  try {
    await counter.armCrash(0);
    await sleep(300);
    assert.equal(await counter.add(1), 11);
  } finally {
    await kernel.stop();
  }
});

test("periodic to 'reply', then a clean stop before any change: the next start resumes from what callers were told", async () => {
  const stateDir = await tempDir('theseus-p2r-stop-');
  const { kernel } = await switchedToReply(stateDir);
  await kernel.stop();
  const again = await Kernel.start({ ...reply('1.1.0', 'b'), stateDir, onLog: logCollector().onLog });
  try {
    assert.equal(await again.client<CounterApi>('counter').add(1), 11);
  } finally {
    await again.stop();
  }
});

test("a kernel without a state folder refuses 'reply' at start and at a swap, naming why", async () => {
  await assert.rejects(Kernel.start({ ...reply('1.0.0', 'a'), onLog: logCollector().onLog }), (error: TheseusError) => error.code === 'E_BAD_OPTIONS' && /stateDir/.test(error.message));
  const kernel = await Kernel.start({ ...periodic('1.0.0', 'a'), onLog: logCollector().onLog });
  try {
    await assert.rejects(kernel.upgrade(reply('1.1.0', 'b')), (error: TheseusError) => error.code === 'E_BAD_OPTIONS' && error.phase === 'check');
    assert.equal(await kernel.client<CounterApi>('counter').label(), 'a', 'nothing was touched');
  } finally {
    await kernel.stop();
  }
});

test("a release that changes only a service's durability is swapped in, and the service runs in its new mode", async () => {
  const kernel = await Kernel.start({ ...periodic('1.0.0', 'a'), stateDir: await tempDir('theseus-donly-'), onLog: logCollector().onLog });
  try {
    const report = await kernel.upgrade(reply('1.1.0', 'a'));
    assert.deepEqual([report.services[0]!.change, report.services[0]!.outcome], ['config', 'switched']);
    await kernel.client<CounterApi>('counter').add(1);
    const [status] = await kernel.status();
    assert.equal(status!.durability, 'reply');
    assert.ok(status!.durableWrites > 0, 'the new worker writes its own state');
  } finally {
    await kernel.stop();
  }
});
