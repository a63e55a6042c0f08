// Issue 12, the state half, through real kernels and worker threads: no state is changed silently
// by a swap, a checkpoint or a stop; a state that cannot be moved is refused with its path, the
// registered code and the phase where it was found; and typed arrays keep their sharing and layout.
//
//   item 9   subclasses of built-ins (a Uint8Array subclass, an Error subclass) used to arrive as
//            the plain built-in;
//   item 10  a SharedArrayBuffer or a Proxy passed the check, then broke the encoding: E_INTERNAL,
//            no path, and every checkpoint failing the same way;
//   item 11  after a swap, views no longer shared their ArrayBuffer, and a small view sat inside
//            the whole snapshot;
//   item 12  a poisoned state found while the old worker snapshots was reported in phase 'migrate'.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Kernel, SwapError, type TheseusError } from '../../kernel/index.ts';
import { decodeState } from '../../kernel/common/state-codec.ts';
import { readCheckpoint } from '../../kernel/common/checkpoints.ts';
import type { PoisonKind } from '../fixtures/services/holder-common.ts';
import { fixture, logCollector } from '../helpers.ts';
import { tempDir } from '../release/helpers.ts';
import { holderRelease, holderTarget, type HolderApi } from './holder.ts';

/** A kernel running holder-v1 with checkpoints in `stateDir` (a new folder unless given), taken only when asked. */
async function durableHolder(stateDir?: string) {
  const dir = stateDir ?? (await tempDir('theseus-state-trust-'));
  const logs = logCollector();
  const kernel = await Kernel.start({ ...holderRelease('1.0.0', 'holder-v1'), stateDir: dir, checkpointIntervalMs: 0, onLog: logs.onLog });
  return { kernel, holder: kernel.client<HolderApi>('holder'), logs, stateDir: dir };
}

/** The failure of a swap that must fail. */
async function swapFailure(swap: Promise<unknown>): Promise<SwapError> {
  const error = await swap.then(
    () => assert.fail('the swap should have failed'),
    (failure: unknown) => failure,
  );
  assert.ok(error instanceof SwapError, `expected a SwapError, got ${String(error)}`);
  return error;
}

/** Buries a refused kind in the state, swaps, and returns the swap's failure. */
async function refusedSwap(kernel: Kernel, kind: PoisonKind, release: string): Promise<SwapError> {
  const holder = kernel.client<HolderApi>('holder');
  await holder.poison({ orders: [{ id: 1 }, { id: 2, lines: new Map([['a', 1]]) }] }, [{ key: 'orders' }, { index: 1 }, { key: 'detail' }], kind);
  return swapFailure(kernel.upgrade(await holderTarget(release, 'holder-v1b')));
}

function assertRefusedAtSnapshot(error: SwapError, path: string, what: RegExp): void {
  assert.equal(error.code, 'E_STATE_NOT_CLONEABLE');
  // Item 12: found in the old worker while it suspends.
  assert.equal(error.phase, 'suspend');
  assert.equal(error.report.failedPhase, 'suspend');
  assert.equal(error.report.outcome, 'rolled-back');
  assert.ok(error.message.includes(`${path} `), `the message names ${path}: ${error.message}`);
  assert.match(error.message, what);
}

test('items 9, 10, 12: a state holding a subclass of a built-in, a SharedArrayBuffer or a Proxy is refused at the snapshot, in phase suspend, with its path; the old worker serves on', async () => {
  const kernel = await Kernel.start({ ...holderRelease('1.0.0', 'holder-v1'), onLog: logCollector().onLog });
  try {
    const holder = kernel.client<HolderApi>('holder');
    const path = 'state.value.orders[1].detail';
    const cases: Array<[PoisonKind, RegExp]> = [
      ['subclass of Uint8Array', /is an instance of HexBytes, a subclass of Uint8Array/],
      ['subclass of Error', /is an instance of LedgerError, a subclass of Error/],
      ['Node Buffer', /is a Node Buffer.*store a Uint8Array/],
      ['SharedArrayBuffer', /is a SharedArrayBuffer/],
      ['view over a SharedArrayBuffer', /is an Int32Array over a SharedArrayBuffer/],
      ['Proxy', /is a Proxy/],
    ];
    let release = 1;
    for (const [kind, what] of cases) {
      const error = await refusedSwap(kernel, kind, `1.0.${release++}`);
      assertRefusedAtSnapshot(error, path, what);
      assert.equal(await holder.code(), 'v1', 'the old worker serves on');
    }
    // Nothing was left half-done: once the state is plain again, the same swap goes through.
    await holder.set({ ok: true });
    assert.equal((await kernel.upgrade(await holderTarget(`1.0.${release}`, 'holder-v1b'))).outcome, 'switched');
    assert.deepEqual(await holder.get(), { ok: true });
    assert.equal(await holder.code(), 'v1b');
  } finally {
    await kernel.stop();
  }
});

test('item 10: a checkpoint of a state holding a SharedArrayBuffer fails with E_STATE_NOT_CLONEABLE and the path, not E_INTERNAL', async () => {
  const { kernel, holder, logs } = await durableHolder();
  try {
    await holder.poison({ cache: {} }, [{ key: 'cache' }, { key: 'memory' }], 'SharedArrayBuffer');
    await kernel.checkpoint(['holder']);
    const failed = logs.records.find((record) => record.message.includes('checkpoint failed'));
    assert.ok(failed, 'the failed checkpoint is logged');
    assert.deepEqual(failed.data, { code: 'E_STATE_NOT_CLONEABLE' });
    assert.match(failed.message, /state\.value\.cache\.memory is a SharedArrayBuffer/);
  } finally {
    await kernel.stop();
  }
});

test('item 10: init returning a SharedArrayBuffer is refused at start, with the path', async () => {
  const error = await Kernel.start({ release: '1.0.0', services: { shared: { entry: fixture('init-shared-memory') } }, onLog: logCollector().onLog }).then(
    async (kernel) => {
      await kernel.stop();
      return assert.fail('the kernel should not have started');
    },
    (failure: unknown) => failure as TheseusError,
  );
  assert.equal(error.code, 'E_STATE_NOT_CLONEABLE');
  assert.match(error.message, /after init.*state\.signal is an Int32Array over a SharedArrayBuffer/);
});

test('item 9: a state that is not plain is not saved at stop: the last good checkpoint stays, and the log says why', async () => {
  const { kernel, holder, logs, stateDir } = await durableHolder();
  try {
    await holder.set({ balance: 10 });
    await kernel.checkpoint(['holder']);
    await holder.poison({ balance: 20 }, [{ key: 'raw' }], 'subclass of Uint8Array');
  } finally {
    await kernel.stop();
  }
  const checkpoint = await readCheckpoint(stateDir, 'holder');
  assert.deepEqual(decodeState(checkpoint!.snapshot.bytes), { value: { balance: 10 } });
  const line = logs.records.find((record) => record.message.includes('the final state was not saved'));
  assert.ok(line, 'the worker logs why the final state was not saved');
  assert.deepEqual(line.data, { code: 'E_STATE_NOT_CLONEABLE' });
  assert.match(line.message, /state\.value\.raw is an instance of HexBytes/);
});

interface SharedViews {
  head: Uint8Array;
  tail: Float64Array;
  window: DataView;
  small: Uint8Array;
  text: string;
}

function sharedViews(): SharedViews {
  const buffer = new ArrayBuffer(64);
  new Uint8Array(buffer).forEach((_, i, bytes) => (bytes[i] = i));
  return { head: new Uint8Array(buffer, 1, 4), tail: new Float64Array(buffer, 16, 2), window: new DataView(buffer, 2, 8), small: Uint8Array.of(1, 2, 3, 4, 5), text: 'x'.repeat(8000) };
}

/** Replies are structured clones, which keep the worker's sharing and layout: what the reply shows, the worker holds. */
function assertLayoutKept(state: SharedViews, where: string): void {
  assert.equal(state.head.buffer, state.tail.buffer, `${where}: the views share their ArrayBuffer`);
  assert.equal(state.head.buffer, state.window.buffer, `${where}: the DataView shares it too`);
  assert.deepEqual([state.head.byteOffset, state.tail.byteOffset, state.window.byteOffset, state.head.buffer.byteLength], [1, 16, 2, 64], `${where}: offsets and size`);
  assert.deepEqual([...state.head], [1, 2, 3, 4], `${where}: contents`);
  assert.deepEqual([state.small.byteOffset, state.small.buffer.byteLength], [0, 5], `${where}: the small array holds its 5 bytes, not the snapshot`);
}

test('item 11: views keep sharing their ArrayBuffer, and a small array its own 5 bytes, after a swap, a migration both ways, and a stop and start', async () => {
  const { kernel, holder, stateDir } = await durableHolder();
  try {
    await holder.set(sharedViews());
    assertLayoutKept((await holder.get()) as SharedViews, 'before any swap');
    await kernel.upgrade(await holderTarget('1.0.1', 'holder-v1b'));
    assertLayoutKept((await holder.get()) as SharedViews, 'after a swap');
    await kernel.upgrade(await holderTarget('2.0.0', 'holder-v2'));
    assertLayoutKept((await holder.get()) as SharedViews, 'after an up migration');
    await kernel.downgrade(await holderTarget('1.0.2', 'holder-v1'));
    assertLayoutKept((await holder.get()) as SharedViews, 'after a down migration');
  } finally {
    await kernel.stop();
  }
  // The checkpoint at stop holds what 1.0.2 ran; holder-v1 at 1.0.0 is the same code and vsn.
  const restarted = await durableHolder(stateDir);
  try {
    assertLayoutKept((await restarted.holder.get()) as SharedViews, 'after stop and start (the checkpoint)');
  } finally {
    await restarted.kernel.stop();
  }
});

test('item 12: on a downgrade, a poisoned state is refused in suspend, before the down migration; what the down migration returns is refused in migrate', async () => {
  const kernel = await Kernel.start({ ...holderRelease('2.0.0', 'holder-v2-bad-down'), onLog: logCollector().onLog });
  try {
    const holder = kernel.client<HolderApi>('holder');
    await holder.poison({ n: 1 }, [{ key: 'cache' }], 'WeakMap');
    const poisoned = await swapFailure(kernel.downgrade(await holderTarget('1.0.0', 'holder-v1')));
    assertRefusedAtSnapshot(poisoned, 'state.wrapped.value.cache', /is a WeakMap/);

    // The down migration's own failure. It runs in the newer code's worker while that worker
    // suspends, but it is the migration that must be fixed, so the phase named is 'migrate'.
    await holder.set({ n: 2 });
    const bad = await swapFailure(kernel.downgrade(await holderTarget('1.0.1', 'holder-v1')));
    assert.equal(bad.code, 'E_MIGRATION_BAD_STATE');
    assert.equal(bad.phase, 'migrate');
    assert.equal(bad.report.outcome, 'rolled-back');
    assert.match(bad.message, /2 -> 1 \(down\).*state\.value\.stamp is an instance of Account/);
    assert.deepEqual(await holder.get(), { n: 2 }, 'the newer worker serves on with its state');
  } finally {
    await kernel.stop();
  }
});
