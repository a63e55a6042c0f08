// bench:http's sequence witness (scripts/bench/sequence-check.ts) on made-up loads: requests cut
// off when a load stops are excused, within that load's window only; anything else missing,
// repeated or out of order is reported.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkSequence, type LoadSequence, type SequenceRecord } from '../../scripts/bench/sequence-check.ts';

/** A load whose connections received `perConnection` (each list rising), in any interleaving. */
function load(perConnection: number[][]): { numbers: number[]; load: LoadSequence } {
  const numbers = perConnection.flat();
  return { numbers, load: { lastPerConnection: perConnection.map((mine) => mine.at(-1)!), lowest: Math.min(...numbers), outOfOrder: 0 } };
}

function record(...loads: Array<ReturnType<typeof load>>): SequenceRecord {
  return { numbers: loads.flatMap((l) => l.numbers), loads: loads.map((l) => l.load) };
}

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

test('every number received once: nothing missing, nothing excused', () => {
  const result = checkSequence(record(load([range(100, 104), range(105, 109)]), load([range(110, 119)])), 120);
  assert.deepEqual(result, { checked: 20, repeats: 0, unexplainedGaps: 0, cutOff: 0, outOfOrder: 0, first: 100, last: 119 });
});

test('one request per connection cut off at the end of each load is excused', () => {
  // Load 1: connections end on 104 and 106; 107 and 108 went to requests cut off by the stop.
  // Load 2 starts at 109; its own cut-off request took 112 (finalNext is 113).
  const result = checkSequence(record(load([[100, 102, 104], [101, 103, 105, 106]]), load([[109, 111], [110]])), 113);
  assert.equal(result.cutOff, 3);
  assert.equal(result.unexplainedGaps, 0);
});

test('a number lost in the middle of a load is not excused against an earlier load\'s unused allowance', () => {
  // Load 1 has two connections and no cut-off request: an allowance of two, unused. Load 2 loses
  // 115 mid-load (well below its own connections' last numbers). Above load 1's floor, but past
  // its end: a lost number, whatever load 1 had left.
  const first = load([range(100, 104), range(105, 109)]);
  const second = load([[110, 112, 114, 116, 118, 120], [111, 113, 117, 119, 121]]);
  const result = checkSequence(record(first, second), 122);
  assert.equal(result.unexplainedGaps, 1);
  assert.equal(result.cutOff, 0);
});

test('more numbers missing at a load\'s end than it had connections: the extra ones are lost', () => {
  // One connection, so one cut-off request at most; 105, 106 and 107 are all missing.
  const result = checkSequence(record(load([range(100, 104)]), load([range(108, 110)])), 111);
  assert.equal(result.cutOff, 1);
  assert.equal(result.unexplainedGaps, 2);
});

test('a number below a load\'s floor is lost, not cut off', () => {
  // Both connections went on past 103: it was not the last request of either.
  const result = checkSequence(record(load([[100, 102, 104], [101, 105]])), 106);
  assert.equal(result.unexplainedGaps, 1);
  assert.equal(result.cutOff, 0);
});

test('repeats and replies out of order are counted', () => {
  const repeated = record(load([[100, 101], [101, 102]]));
  assert.equal(checkSequence(repeated, 103).repeats, 1);
  const reordered: SequenceRecord = { numbers: [100, 101], loads: [{ lastPerConnection: [100], lowest: 100, outOfOrder: 1 }] };
  assert.equal(checkSequence(reordered, 102).outOfOrder, 1);
});

test('a load that received nothing excuses nothing, and the next load with numbers bounds the one before', () => {
  const empty: LoadSequence = { lastPerConnection: [], lowest: null, outOfOrder: 0 };
  const first = load([range(100, 104)]);
  const last = load([range(107, 109)]);
  // 105 was cut off from the first load; 106 is lost (the empty load had nothing to cut off).
  const result = checkSequence({ numbers: [...first.numbers, ...last.numbers], loads: [first.load, empty, last.load] }, 110);
  assert.deepEqual([result.cutOff, result.unexplainedGaps], [1, 1]);
});
