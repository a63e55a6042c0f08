// bench:http's witness (scripts/bench-http.ts): did every number the sequence service handed out
// reach exactly one response? Kept apart from the script, which starts a kernel when imported, so
// a test can feed it made-up loads (test/scripts/sequence-check.test.ts).

/** One autocannon load as the sequence saw it. */
export interface LoadSequence {
  /** The last number each connection received in this load (connections that received any). */
  lastPerConnection: number[];
  /** The lowest number any connection received in this load; null when it received none. */
  lowest: number | null;
  /** Replies whose number was not above the previous one on the same connection. */
  outOfOrder: number;
}

/** Every number received over a run of loads, and each load's view of them, in load order. */
export interface SequenceRecord {
  numbers: number[];
  loads: LoadSequence[];
}

export interface SequenceCheck {
  checked: number;
  repeats: number;
  unexplainedGaps: number;
  cutOff: number;
  outOfOrder: number;
  first: number;
  last: number;
}

/**
 * Every number the service handed out (from the first seen up to `finalNext`, the next it would
 * hand out) must have reached exactly one response, in rising order per connection.
 *
 * The only numbers allowed to be missing are those of requests cut off when a load stopped: at
 * most one per connection of that load, each above the lowest "last number" of its connections
 * (the floor) and below the lowest number of the next load (the ceiling; `finalNext` after the
 * last load). Without the ceiling, a number lost in the middle of a load would sit above the
 * previous load's floor and be excused against that load's unused allowance.
 */
export function checkSequence(record: SequenceRecord, finalNext: number): SequenceCheck {
  const sorted = Float64Array.from(record.numbers).sort();
  let repeats = 0;
  for (let i = 1; i < sorted.length; i++) if (sorted[i] === sorted[i - 1]) repeats++;
  const missing: number[] = [];
  const first = sorted[0] ?? 0;
  for (let i = 1, expected = first + 1; i <= sorted.length; i++) {
    const next = i < sorted.length ? sorted[i]! : finalNext;
    for (; expected < next; expected++) missing.push(expected);
    expected = Math.max(expected, next + 1);
  }
  const windows = record.loads.map((load, index) => ({
    floor: load.lastPerConnection.length > 0 ? Math.min(...load.lastPerConnection) : Infinity,
    ceiling: record.loads.slice(index + 1).find((later) => later.lowest !== null)?.lowest ?? finalNext,
    allowed: load.lastPerConnection.length,
    used: 0,
  }));
  let unexplainedGaps = 0;
  let cutOff = 0;
  for (const number of missing) {
    const window = windows.find((candidate) => number > candidate.floor && number < candidate.ceiling);
    if (window && window.used < window.allowed) {
      window.used++;
      cutOff++;
    } else unexplainedGaps++;
  }
  const outOfOrder = record.loads.reduce((sum, load) => sum + load.outOfOrder, 0);
  return { checked: sorted.length, repeats, unexplainedGaps, cutOff, outOfOrder, first, last: sorted[sorted.length - 1] ?? 0 };
}
