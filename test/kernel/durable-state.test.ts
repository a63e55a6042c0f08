// Durable state: checkpoints written atomically, resumed at start (migrated through the service's
// migrations when older, or down in the newer code when newer), and a corrupt one refused.

import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { deserialize } from 'node:v8';
import { test } from 'node:test';
import { Kernel, type TheseusError } from '../../kernel/index.ts';
import { readCheckpoint } from '../../kernel/common/checkpoints.ts';
import { tempDir } from '../release/helpers.ts';
import { logCollector, parseSequenceReply, sequenceRelease, waitUntil, type SequenceApi } from '../helpers.ts';

async function run(stateDir: string, version: '0.1.0' | '0.2.0' | '0.3.0', work: (seq: SequenceApi, kernel: Kernel) => Promise<void>, extra: Partial<Parameters<typeof Kernel.start>[0]> = {}) {
  const logs = logCollector();
  const kernel = await Kernel.start({ ...sequenceRelease(version), stateDir, onLog: logs.onLog, ...extra });
  try {
    await work(kernel.client<SequenceApi>('sequence'), kernel);
  } finally {
    await kernel.stop();
  }
  return logs.records;
}

test('stop, then start: the sequence continues where it left off', async () => {
  const stateDir = await tempDir('theseus-state-');
  await run(stateDir, '0.1.0', async (seq) => {
    for (let i = 0; i < 10; i++) await seq.nextNumber();
  });
  const checkpoint = await readCheckpoint(stateDir, 'sequence');
  assert.deepEqual([checkpoint!.header.service, checkpoint!.header.release, checkpoint!.header.vsn], ['sequence', '0.1.0', '0']);
  await run(stateDir, '0.1.0', async (seq) => {
    assert.equal(await seq.nextNumber(), 466);
  });
});

test('an older checkpoint is migrated up at start; a newer one down, in the code that wrote it', async () => {
  const stateDir = await tempDir('theseus-state-');
  await run(stateDir, '0.2.0', async (seq) => {
    await seq.nextNumber();
    await seq.nextNumber();
  });
  // 0.3.0 boots on a vsn "0" checkpoint: its up migration runs.
  const records = await run(stateDir, '0.3.0', async (seq) => {
    assert.equal(parseSequenceReply(await seq.nextNumber()), 458);
    seq.incrementNumber(5);
    assert.equal(parseSequenceReply(await seq.nextNumber()), 459);
  });
  assert.ok(records.some((r) => r.message === 'Changing code from 0 to 1'));
  assert.equal((await readCheckpoint(stateDir, 'sequence'))!.header.vsn, '1');
  // 0.2.0 boots on a vsn "1" checkpoint: only 0.3.0's code can take it down.
  await assert.rejects(run(stateDir, '0.2.0', async () => undefined), (error: TheseusError) => error.code === 'E_CHECKPOINT_INCOMPATIBLE');
  await run(
    stateDir,
    '0.2.0',
    async (seq) => {
      assert.equal(await seq.nextNumber(), 'The next number is 464');
    },
    { resolveRelease: async (version) => (version === '0.3.0' ? sequenceRelease('0.3.0').services : null) },
  );
});

test('a corrupt checkpoint is refused with a clear error; the state is never silently reset', async () => {
  const stateDir = await tempDir('theseus-state-');
  await run(stateDir, '0.1.0', async (seq) => {
    await seq.nextNumber();
  });
  const file = join(stateDir, 'sequence.ckpt');
  const contents = await readFile(file);
  contents[contents.length - 1] = contents[contents.length - 1]! ^ 0xff;
  await writeFile(file, contents);
  await assert.rejects(run(stateDir, '0.1.0', async () => undefined), (error: TheseusError) => {
    assert.equal(error.code, 'E_CHECKPOINT_CORRUPT');
    assert.match(error.message, /sequence\.ckpt is unusable: its state bytes do not match their sha256/);
    return true;
  });
  await writeFile(file, 'not a checkpoint');
  await assert.rejects(run(stateDir, '0.1.0', async () => undefined), { code: 'E_CHECKPOINT_CORRUPT' });
});

// Every 10 changes, and no timer: after 25 the checkpoint may be at most 10 changes behind, so it
// holds at least 15 of them, and none that did not happen. The count restarts when the snapshot is
// taken, which under load can be several changes after the 10th (once it held 18: the next 10
// never came), so "at least 20" was a wish, not the guarantee.
// (It once held 11 or 12, 13 or 14 behind: the kernel answered the worker's second "checkpoint
// due", which came while the first checkpoint was being written, with that one, and the worker
// had reset its count.)
test(
  'checkpoints are taken every N state changes: after 25 changes with N = 10, the checkpoint is at most 10 behind',
  async () => {
    const stateDir = await tempDir('theseus-state-');
    await run(
      stateDir,
      '0.1.0',
      async (seq) => {
        for (let i = 0; i < 25; i++) await seq.nextNumber();
        let held: unknown = null;
        await waitUntil('a checkpoint holding at least 15 of the 25 changes (state 471 or more)', async () => {
          const checkpoint = await readCheckpoint(stateDir, 'sequence');
          held = checkpoint && deserialize(checkpoint.snapshot.bytes);
          return typeof held === 'number' && held >= 456 + 15;
        }, { intervalMs: 20, timeoutMs: 30_000 }).catch((error: Error) => assert.fail(`${error.message}; it holds ${String(held)}`));
        assert.ok((held as number) <= 456 + 25, `the checkpoint holds ${String(held)}, past the 25 changes made`);
      },
      { checkpointIntervalMs: 0, checkpointEveryChanges: 10 },
    );
  },
);

test('a committed swap takes a checkpoint in the new release', async () => {
  const stateDir = await tempDir('theseus-state-');
  await run(
    stateDir,
    '0.1.0',
    async (seq, kernel) => {
      for (let i = 0; i < 5; i++) await seq.nextNumber();
      // No timer and too few changes: no checkpoint yet, so the one after the swap is the swap's.
      assert.equal(await readCheckpoint(stateDir, 'sequence'), null);
      await kernel.upgrade(sequenceRelease('0.3.0'));
      const afterSwap = await readCheckpoint(stateDir, 'sequence');
      assert.deepEqual([afterSwap!.header.release, afterSwap!.header.vsn], ['0.3.0', '1']);
      assert.deepEqual(deserialize(afterSwap!.snapshot.bytes), { currentNumber: 461, delta: 1 }, 'the migrated state, as it stood at the switch');
    },
    { checkpointIntervalMs: 0, checkpointEveryChanges: 10 },
  );
});
