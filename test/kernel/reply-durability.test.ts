// Durability 'reply': no reply leaves the worker before the state that produced it is on disk.
// Checked from outside the worker, by reading the checkpoint file the moment a reply arrives, and
// under load, where one write must cover many calls (group commit).

import assert from 'node:assert/strict';
import { decodeState } from '../../kernel/common/state-codec.ts';
import { test } from 'node:test';
import { Kernel, type TheseusError } from '../../kernel/index.ts';
import { readCheckpoint } from '../../kernel/common/checkpoints.ts';
import { tempDir } from '../release/helpers.ts';
import { checkSequenceInvariants, fixture, logCollector, parseSequenceReply, sequenceEntry, startSequenceLoad, waitForCalls, type SequenceApi } from '../helpers.ts';

const replyDurable = (version: '0.1.0' | '0.2.0' | '0.3.0') => ({
  release: version,
  services: { sequence: { entry: sequenceEntry(version), durability: 'reply' as const } },
});

/** The sequence number the checkpoint on disk would hand out next. */
async function numberOnDisk(stateDir: string): Promise<number> {
  const checkpoint = await readCheckpoint(stateDir, 'sequence');
  assert.ok(checkpoint, 'a checkpoint exists');
  const state = decodeState(checkpoint.snapshot.bytes) as number | { currentNumber: number };
  return typeof state === 'number' ? state : state.currentNumber;
}

test('reply durability: when a reply arrives, the state that produced it is already on disk', async () => {
  const stateDir = await tempDir('theseus-reply-');
  const kernel = await Kernel.start({ ...replyDurable('0.1.0'), stateDir, onLog: logCollector().onLog });
  try {
    const seq = kernel.client<SequenceApi>('sequence');
    for (let i = 0; i < 20; i++) {
      const handedOut = parseSequenceReply(await seq.nextNumber());
      // Read at once, before anything else can run: a kill -9 now would resume above it.
      assert.ok((await numberOnDisk(stateDir)) > handedOut, `after handing out ${handedOut}, the disk must already be past it`);
    }
    // A cast's effect reaches the disk before any later reply that could show it.
    seq.incrementNumber(100);
    const after = parseSequenceReply(await seq.nextNumber());
    assert.equal(after, 456 + 20 + 100);
    assert.ok((await numberOnDisk(stateDir)) > after);
  } finally {
    await kernel.stop();
  }
});

test('reply durability under 200 callers: one write covers many calls, every number once, and a restart resumes above every number handed out', async () => {
  const stateDir = await tempDir('theseus-reply-');
  const kernel = await Kernel.start({ ...replyDurable('0.1.0'), stateDir, onLog: logCollector().onLog });
  let highest = 0;
  try {
    const load = startSequenceLoad(kernel, { callers: 200, ports: 20, inFlight: 1 });
    await waitForCalls(load, 5000);
    // A swap in reply durability: the old worker's last write lands before the new one serves.
    await kernel.upgrade(replyDurable('0.2.0'));
    await waitForCalls(load, 5000);
    const result = await load.stop();
    const { sorted, problems } = checkSequenceInvariants(result);
    assert.deepEqual(problems, []);
    highest = sorted.at(-1)!;
    const [status] = await kernel.status();
    const writes = status!.durableWrites;
    // Group commit: far fewer writes than calls (each write waits for the previous one). The
    // count is the new worker's, since the swap; it served about half of the calls.
    assert.ok(writes > 0 && writes < result.calls / 4, `${writes} writes for ${result.calls} calls`);
  } finally {
    await kernel.stop();
  }
  const again = await Kernel.start({ ...replyDurable('0.2.0'), stateDir, onLog: logCollector().onLog });
  try {
    assert.equal(parseSequenceReply(await again.client<SequenceApi>('sequence').nextNumber()), highest + 1);
  } finally {
    await again.stop();
  }
});

test('reply durability with a disk that refuses every write: the calls fail with E_STATE_NOT_DURABLE, and the state goes back to what was written', async () => {
  const stateDir = await tempDir('theseus-reply-');
  const previous = process.env.THESEUS_FAULTS;
  // Read by each worker when it starts: every state write fails as a full disk would.
  process.env.THESEUS_FAULTS = 'state-write';
  const logs = logCollector();
  let kernel: Kernel;
  try {
    kernel = await Kernel.start({ release: '1.0.0', services: { backlog: { entry: fixture('backlog-a'), durability: 'reply' } }, stateDir, onLog: logs.onLog });
  } finally {
    if (previous === undefined) delete process.env.THESEUS_FAULTS;
    else process.env.THESEUS_FAULTS = previous;
  }
  try {
    const backlog = kernel.client<{ next(caller: string, seq: number): Promise<unknown>; summary(): Promise<{ next: number }> }>('backlog');
    await assert.rejects(backlog.next('c', 1), (error: TheseusError) => error.code === 'E_STATE_NOT_DURABLE');
    await assert.rejects(backlog.next('c', 2), (error: TheseusError) => error.code === 'E_STATE_NOT_DURABLE');
    // Nothing a caller was told of was lost, and nothing it was not told of was kept.
    assert.equal((await backlog.summary()).next, 1, 'the failed calls were undone');
    assert.ok(logs.records.some((record) => record.level === 'error' && /could not be written/.test(record.message)), 'the log says why');
  } finally {
    await kernel.stop();
  }
});
