// Durable state: checkpoints written atomically, resumed at start (migrated through the service's
// migrations when older, or down in the newer code when newer), and a corrupt one refused.

import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { Kernel, type TheseusError } from '../../kernel/index.ts';
import { readCheckpoint } from '../../kernel/common/checkpoints.ts';
import { tempDir } from '../release/helpers.ts';
import { logCollector, parseSequenceReply, sequenceRelease, type SequenceApi } from '../helpers.ts';

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

test('checkpoints are also taken every N state changes and after a committed swap', async () => {
  const stateDir = await tempDir('theseus-state-');
  await run(
    stateDir,
    '0.1.0',
    async (seq, kernel) => {
      for (let i = 0; i < 25; i++) await seq.nextNumber();
      // Every 10 changes: the checkpoint holds at least 20 of them.
      for (let waited = 0; waited < 5000; waited += 20) {
        const checkpoint = await readCheckpoint(stateDir, 'sequence');
        if (checkpoint && checkpoint.header.release === '0.1.0') break;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      assert.ok(await readCheckpoint(stateDir, 'sequence'));
      await kernel.upgrade(sequenceRelease('0.3.0'));
      const afterSwap = await readCheckpoint(stateDir, 'sequence');
      assert.deepEqual([afterSwap!.header.release, afterSwap!.header.vsn], ['0.3.0', '1']);
    },
    { checkpointIntervalMs: 0, checkpointEveryChanges: 10 },
  );
});
