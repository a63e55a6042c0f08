// Property tests through real worker threads: random plain states (Maps, Sets, Dates, bigints,
// typed arrays and views sharing buffers, sparse arrays, -0, NaN, lone surrogates, shared
// references, cycles) come back the same after a hot swap and after an up-then-down migration, and
// a refused value buried at a random path is always refused with E_STATE_NOT_CLONEABLE and that
// path. Each swap boots a worker, so runs are few and each carries a batch of states.
//
// What comes back is a reply, a structured clone of the worker's state: it keeps the worker's
// sharing and layout, so comparing it with the original compares the worker's state.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import fc from 'fast-check';
import { Kernel, SwapError } from '../../kernel/index.ts';
import { poisons, type PoisonKind } from '../fixtures/services/holder-common.ts';
import { logCollector } from '../helpers.ts';
import { formatPath, plainState, treeWithSlot } from '../common/plain-arbitraries.ts';
import { graphDifference } from '../common/same-graph.ts';
import { holderRelease, holderTarget, type HolderApi } from './holder.ts';

const batch = fc.array(plainState, { minLength: 1, maxLength: 8 });

let kernel: Kernel;
let holder: HolderApi;
/** v1 releases count up from 1.0.0, v2 releases from 2.0.0: every swap gets a version of its own. */
let nextV1 = 0;
let nextV2 = 0;
/** Which holder code runs now. */
let running: 'holder-v1' | 'holder-v1b' | 'holder-v2' = 'holder-v1';

before(async () => {
  kernel = await Kernel.start({ ...holderRelease(`1.0.${nextV1++}`, 'holder-v1'), onLog: logCollector().onLog });
  holder = kernel.client<HolderApi>('holder');
});
after(async () => {
  await kernel.stop();
});

async function swapTo(version: 'holder-v1' | 'holder-v1b' | 'holder-v2'): Promise<void> {
  const release = version === 'holder-v2' ? `2.0.${nextV2++}` : `1.0.${nextV1++}`;
  const swap = release.startsWith('2.') || running !== 'holder-v2' ? kernel.upgrade : kernel.downgrade;
  const report = await swap.call(kernel, await holderTarget(release, version));
  assert.equal(report.outcome, 'switched');
  running = version;
}

test('property: random plain states come back the same after a hot swap (same vsn, new code)', async () => {
  await fc.assert(
    fc.asyncProperty(batch, async (states) => {
      await holder.set(states);
      await swapTo(running === 'holder-v1' ? 'holder-v1b' : 'holder-v1');
      assert.equal(await holder.code(), running === 'holder-v1' ? 'v1' : 'v1b', 'the swap happened');
      const difference = graphDifference(await holder.get(), states);
      assert.equal(difference, null, difference ?? '');
    }),
    { numRuns: 15 },
  );
});

test('property: random plain states come back the same after an up migration and a down migration through real workers', async () => {
  if (running !== 'holder-v1') await swapTo('holder-v1');
  await fc.assert(
    fc.asyncProperty(batch, async (states) => {
      await holder.set(states);
      await swapTo('holder-v2');
      const up = graphDifference(await holder.get(), states);
      assert.equal(up, null, `after the up migration: ${up}`);
      await swapTo('holder-v1');
      const down = graphDifference(await holder.get(), states);
      assert.equal(down, null, `after the down migration: ${down}`);
    }),
    { numRuns: 8 },
  );
});

test('property: a refused value buried at a random path is refused at the swap with E_STATE_NOT_CLONEABLE and that path', async () => {
  const kinds = Object.keys(poisons) as PoisonKind[];
  if (running === 'holder-v2') await swapTo('holder-v1');
  await fc.assert(
    fc.asyncProperty(treeWithSlot, fc.constantFrom(...kinds), async ({ tree, path }, kind) => {
      await holder.poison(tree, path, kind);
      const target = await holderTarget(`1.0.${nextV1++}`, running === 'holder-v1' ? 'holder-v1b' : 'holder-v1');
      const error = await kernel.upgrade(target).then(
        () => assert.fail(`a state holding a ${kind} was swapped`),
        (failure: unknown) => failure,
      );
      assert.ok(error instanceof SwapError);
      assert.equal(error.code, 'E_STATE_NOT_CLONEABLE');
      assert.equal(error.phase, 'suspend');
      const where = formatPath('state.value', path);
      assert.ok(error.message.includes(`${where} is `) || error.message.includes(`${where} has `), `${kind} at ${where}: ${error.message}`);
      await holder.set(null);
    }),
    { numRuns: 12 },
  );
});
