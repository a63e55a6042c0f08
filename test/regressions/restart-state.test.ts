// Regressions found in review: a restarted worker must resume from the state it last had, never
// from init() or from a snapshot of another state vsn that its code cannot read.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Kernel } from '../../kernel/index.ts';
import { readCheckpoint } from '../../kernel/common/checkpoints.ts';
import { fixture, logCollector } from '../helpers.ts';
import { tempDir } from '../release/helpers.ts';

interface TallyApi {
  get(): Promise<number>;
  inc(): Promise<number>;
  crashNow(): Promise<never>;
}

const tally = (version: 'v1' | 'v2') => ({ tally: { entry: fixture(`tally-${version}`) } });
const quiet = { checkpointIntervalMs: 0, checkpointEveryChanges: 0 };

test('a crash right after booting from a checkpoint restarts from that checkpoint, not init()', async () => {
  const stateDir = await tempDir('theseus-state-');
  let kernel = await Kernel.start({ release: '1.0.0', services: tally('v1'), stateDir, ...quiet, onLog: logCollector().onLog });
  for (let i = 0; i < 7; i++) await kernel.client<TallyApi>('tally').inc();
  await kernel.stop();
  kernel = await Kernel.start({ release: '2.0.0', services: tally('v2'), stateDir, ...quiet, onLog: logCollector().onLog });
  try {
    const client = kernel.client<TallyApi>('tally');
    assert.equal(await client.get(), 7, 'migrated up at boot');
    await assert.rejects(client.crashNow(), { code: 'E_SERVICE_DOWN' });
    assert.equal(await client.get(), 7, 'the restart resumed from the checkpoint it booted from');
    await kernel.checkpoint();
    assert.equal((await readCheckpoint(stateDir, 'tally'))!.header.vsn, '2');
  } finally {
    await kernel.stop();
  }
});

test('a crash right after a downgrade restarts from the state the swap carried down', async () => {
  const kernel = await Kernel.start({ release: '2.0.0', services: tally('v2'), ...quiet, onLog: logCollector().onLog });
  try {
    const client = kernel.client<TallyApi>('tally');
    for (let i = 0; i < 5; i++) await client.inc();
    await kernel.checkpoint(); // an in-memory snapshot at vsn "2", which vsn "1" code cannot read
    await client.inc();
    await kernel.downgrade({ release: '1.0.0', services: tally('v1') });
    await assert.rejects(client.crashNow(), { code: 'E_SERVICE_DOWN' });
    assert.equal(await client.get(), 6, 'resumed with the state it was switched in with');
    const [status] = await kernel.status();
    assert.deepEqual([status!.state, status!.vsn, status!.restarts], ['running', '1', 1]);
  } finally {
    await kernel.stop();
  }
});
