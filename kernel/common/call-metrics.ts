// Per-worker call counters and a latency histogram with fixed buckets. Calls between services go
// worker to worker over MessagePorts and never pass the main thread, so each worker counts its
// own; the main thread asks for a copy when Prometheus scrapes or the dashboard ticks
// (kernel/main/metrics.ts). Counting must cost the call path nothing measurable: typed arrays
// allocated once, a linear scan of 16 bounds, no object per call. Runs in every thread.

/** Upper bounds of the latency buckets, in seconds (Prometheus' `le`); +Inf is implied. */
export const LATENCY_BUCKETS_SECONDS: readonly number[] = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

/** The same bounds in ms, which is what performance.now() differences are in. */
const BOUNDS_MS = Float64Array.from(LATENCY_BUCKETS_SECONDS, (seconds) => seconds * 1000);

/** A copy of one worker's counters, as it crosses to the main thread. */
export interface CallMetricsSnapshot {
  callsOk: number;
  callsFailed: number;
  castsOk: number;
  castsFailed: number;
  /** Non-cumulative counts per bucket of LATENCY_BUCKETS_SECONDS, and one more for +Inf. */
  latencyBuckets: number[];
  latencySumSeconds: number;
  latencyCount: number;
}

export class CallMetrics {
  // Float64 so that counts go past 2^32 without wrapping, as a long-lived kernel's will.
  #outcomes = new Float64Array(4);
  #buckets = new Float64Array(BOUNDS_MS.length + 1);
  #sumMs = 0;

  /** A call answered (ok) or refused/failed, `ms` after its message started. */
  call(ok: boolean, ms: number): void {
    this.#outcomes[ok ? 0 : 1]!++;
    this.#observe(ms, 1);
  }

  /** `count` calls that shared one message (a batch), answered together `ms` after it started. */
  calls(okCount: number, failedCount: number, ms: number): void {
    this.#outcomes[0]! += okCount;
    this.#outcomes[1]! += failedCount;
    this.#observe(ms, okCount + failedCount);
  }

  cast(ok: boolean): void {
    this.#outcomes[ok ? 2 : 3]!++;
  }

  #observe(ms: number, count: number): void {
    let index = 0;
    while (index < BOUNDS_MS.length && ms > BOUNDS_MS[index]!) index++;
    this.#buckets[index]! += count;
    this.#sumMs += ms * count;
  }

  snapshot(): CallMetricsSnapshot {
    const latencyBuckets = Array.from(this.#buckets);
    return {
      callsOk: this.#outcomes[0]!,
      callsFailed: this.#outcomes[1]!,
      castsOk: this.#outcomes[2]!,
      castsFailed: this.#outcomes[3]!,
      latencyBuckets,
      latencySumSeconds: this.#sumMs / 1000,
      latencyCount: latencyBuckets.reduce((total, count) => total + count, 0),
    };
  }
}

/** Adds `more` into `into` (both snapshots of the same bucket layout). */
export function addSnapshots(into: CallMetricsSnapshot, more: CallMetricsSnapshot): CallMetricsSnapshot {
  return {
    callsOk: into.callsOk + more.callsOk,
    callsFailed: into.callsFailed + more.callsFailed,
    castsOk: into.castsOk + more.castsOk,
    castsFailed: into.castsFailed + more.castsFailed,
    latencyBuckets: into.latencyBuckets.map((count, index) => count + (more.latencyBuckets[index] ?? 0)),
    latencySumSeconds: into.latencySumSeconds + more.latencySumSeconds,
    latencyCount: into.latencyCount + more.latencyCount,
  };
}

export function emptySnapshot(): CallMetricsSnapshot {
  return { callsOk: 0, callsFailed: 0, castsOk: 0, castsFailed: 0, latencyBuckets: new Array<number>(LATENCY_BUCKETS_SECONDS.length + 1).fill(0), latencySumSeconds: 0, latencyCount: 0 };
}

/**
 * Whether workers count calls: on unless THESEUS_CALL_METRICS=0, which `npm run bench` uses to
 * show what counting costs. Workers inherit the kernel's environment.
 */
export function callMetricsEnabled(): boolean {
  return process.env.THESEUS_CALL_METRICS !== '0';
}
