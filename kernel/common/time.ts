// Time as Theseus measures it. Runs in every thread.

/** Epoch milliseconds with sub-millisecond precision, comparable between threads of one process. */
export function preciseNow(): number {
  return performance.timeOrigin + performance.now();
}

/** A duration in ms, to the microsecond: what reports, audit lines and progress events carry. */
export function roundMs(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
