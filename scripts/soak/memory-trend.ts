// The soak's memory verdict. RSS moves by several percent from one sample to the next on a busy
// machine (garbage collection, the allocator, a new worker's heap), so comparing two single
// samples flakes both ways. The trend is read from medians instead: the median of the last third
// of the samples taken after the warm-up, against the median of the first third.

export interface MemoryTrend {
  /** Medians of the first and last thirds, in the samples' unit. */
  first: number;
  last: number;
  /** (last - first) / first. */
  growth: number;
  /** Samples in each third. */
  perThird: number;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** The trend of `samples` (in the order taken); null when there are too few to have one (under 6). */
export function memoryTrend(samples: readonly number[]): MemoryTrend | null {
  if (samples.length < 6) return null;
  const perThird = Math.floor(samples.length / 3);
  const first = median(samples.slice(0, perThird));
  const last = median(samples.slice(-perThird));
  return { first, last, growth: (last - first) / first, perThird };
}
