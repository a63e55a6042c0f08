// The soak's memory gate once compared two single RSS samples, and failed a healthy run at +16 %
// on a busy machine while passing the same commit at -2.7 % on a quiet one. It now compares the
// medians of the first and last thirds (scripts/soak/memory-trend.ts): noise alone must pass, and
// a real growth must still fail. The real soak with a deliberate leak (THESEUS_FAULTS=
// leak-per-swap:N) runs in .ci/run and must fail there on its RSS.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { memoryTrend } from '../../scripts/soak/memory-trend.ts';

/** A small seeded generator, so every run checks the same series. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `length` RSS samples around 130 MB, each off by up to ±`noise`, growing by `growth` from first to last. */
function samples(seed: number, length: number, noise: number, growth: number): number[] {
  const next = random(seed);
  return Array.from({ length }, (_, index) => 130 * (1 + (growth * index) / (length - 1)) * (1 + noise * (2 * next() - 1)));
}

test('the memory gate: samples that jump by ±7 % with no growth pass; memory that really grows by 25 % over the run fails', () => {
  // The soak samples RSS four times a second: a one-minute run keeps about 180 after its warm-up.
  for (let seed = 1; seed <= 300; seed++) {
    const length = 150 + (seed % 151);
    const flat = memoryTrend(samples(seed, length, 0.07, 0))!;
    // A single sample can be 14 % off another; the medians of the thirds stay within a few percent.
    assert.ok(Math.abs(flat.growth) < 0.06, `seed ${seed}: noise alone measured ${(flat.growth * 100).toFixed(1)} %`);
    // +25 % from the first sample to the last is about +16 % between the middles of the thirds.
    const leaking = memoryTrend(samples(seed, length, 0.07, 0.25))!;
    assert.ok(leaking.growth > 0.1, `seed ${seed}: a 25 % growth measured only ${(leaking.growth * 100).toFixed(1)} %`);
  }
  assert.equal(memoryTrend([1, 2, 3, 4, 5]), null, 'too few samples give no verdict');
});
