// What the dashboard page shows, computed once a tick for every open page: each service with its
// rates and latency since the last tick, the recent swaps, the registry and the audit trail's last
// lines. Runs in the kernel's main thread; the page only draws it.

import { open } from 'node:fs/promises';
import { LATENCY_BUCKETS_SECONDS, addSnapshots, emptySnapshot, type CallMetricsSnapshot } from '../../common/call-metrics.ts';
import type { Collected, KernelMetrics } from '../metrics.ts';
import type { DashboardService, DashboardTick } from './tick.ts';

export interface FeedSource {
  metrics: KernelMetrics;
  kernelInfo(): { app: string; release: string; startedAt: number };
  releases(): Promise<Array<{ version: string; status: string; running: boolean }>>;
  auditFile: string;
}

/** Each service's calls under every release it ran, so a swap does not look like a reset. */
type Totals = Map<string, CallMetricsSnapshot>;

export class DashboardFeed {
  #source: FeedSource;
  #previous: { at: number; totals: Totals; http: CallMetricsSnapshot } | null = null;

  constructor(source: FeedSource) {
    this.#source = source;
  }

  async tick(): Promise<DashboardTick> {
    const collected = await this.#source.metrics.collect();
    const totals = this.#totals(collected);
    const previous = this.#previous;
    const http = this.#source.metrics.httpLatency.snapshot();
    this.#previous = { at: collected.at, totals, http };
    const seconds = previous ? (collected.at - previous.at) / 1000 : 0;
    const since = (now: CallMetricsSnapshot, name: string) => (previous ? difference(now, previous.totals.get(name) ?? emptySnapshot()) : null);
    const services = collected.services.map((service): DashboardService => {
      const now = totals.get(service.name) ?? emptySnapshot();
      const delta = since(now, service.name);
      return {
        name: service.name,
        release: service.release,
        vsn: service.vsn,
        state: service.state,
        calls: now.callsOk + now.callsFailed,
        callsPerSecond: delta && seconds > 0 ? (delta.callsOk + delta.callsFailed) / seconds : null,
        p99Ms: delta ? quantileMs(delta, 0.99) : null,
        errors: now.callsFailed + now.castsFailed,
        inFlight: service.inFlight,
        queued: service.queued,
        heapBytes: service.heapUsed,
        restarts: service.restarts,
        stateBytes: service.stateBytes,
        checkpointAgeSeconds: service.checkpointAgeSeconds,
      };
    });
    let all = emptySnapshot();
    for (const service of collected.services) {
      const delta = since(totals.get(service.name) ?? emptySnapshot(), service.name);
      if (delta) all = addSnapshots(all, delta);
    }
    const info = this.#source.kernelInfo();
    const door = collected.frontDoor;
    return {
      at: collected.at,
      app: info.app,
      release: info.release,
      pid: process.pid,
      uptimeMs: collected.at - info.startedAt,
      services,
      total: { callsPerSecond: previous && seconds > 0 ? (all.callsOk + all.callsFailed) / seconds : null, p99Ms: previous ? quantileMs(all, 0.99) : null },
      http: door ? { requests: door.stats.requests, openConnections: door.openConnections, inFlight: door.stats.inFlight, ...httpRates(http, previous?.http ?? null, seconds) } : null,
      swaps: [...this.#source.metrics.swaps],
      releases: await this.#source.releases(),
      audit: await lastLines(this.#source.auditFile, 8),
    };
  }

  #totals(collected: Collected): Totals {
    const totals: Totals = new Map();
    const metrics = this.#source.metrics;
    for (const { service, release } of metrics.releasesSeen()) {
      totals.set(service, addSnapshots(totals.get(service) ?? emptySnapshot(), metrics.callsOf(service, release)));
    }
    for (const service of collected.services) if (!totals.has(service.name)) totals.set(service.name, emptySnapshot());
    return totals;
  }
}

function httpRates(now: CallMetricsSnapshot, before: CallMetricsSnapshot | null, seconds: number): { requestsPerSecond: number | null; p99Ms: number | null } {
  if (!before || seconds <= 0) return { requestsPerSecond: null, p99Ms: null };
  const delta = difference(now, before);
  return { requestsPerSecond: delta.latencyCount / seconds, p99Ms: quantileMs(delta, 0.99) };
}

function difference(now: CallMetricsSnapshot, before: CallMetricsSnapshot): CallMetricsSnapshot {
  return {
    callsOk: now.callsOk - before.callsOk,
    callsFailed: now.callsFailed - before.callsFailed,
    castsOk: now.castsOk - before.castsOk,
    castsFailed: now.castsFailed - before.castsFailed,
    latencyBuckets: now.latencyBuckets.map((count, index) => count - (before.latencyBuckets[index] ?? 0)),
    latencySumSeconds: now.latencySumSeconds - before.latencySumSeconds,
    latencyCount: now.latencyCount - before.latencyCount,
  };
}

/**
 * A quantile from bucket counts, interpolated inside its bucket as Prometheus'
 * histogram_quantile() does; null without observations. Past the last bound it says that bound.
 */
export function quantileMs(snapshot: CallMetricsSnapshot, q: number): number | null {
  const total = snapshot.latencyBuckets.reduce((sum, count) => sum + count, 0);
  if (total <= 0) return null;
  const rank = q * total;
  let cumulative = 0;
  for (let index = 0; index < snapshot.latencyBuckets.length; index++) {
    const count = snapshot.latencyBuckets[index]!;
    if (cumulative + count >= rank && count > 0) {
      if (index >= LATENCY_BUCKETS_SECONDS.length) return LATENCY_BUCKETS_SECONDS[LATENCY_BUCKETS_SECONDS.length - 1]! * 1000;
      const lower = index === 0 ? 0 : LATENCY_BUCKETS_SECONDS[index - 1]!;
      const upper = LATENCY_BUCKETS_SECONDS[index]!;
      return (lower + ((upper - lower) * (rank - cumulative)) / count) * 1000;
    }
    cumulative += count;
  }
  return null;
}

/** The last `count` lines of a file, reading only its tail (the audit trail grows for ever). */
async function lastLines(file: string, count: number): Promise<string[]> {
  const handle = await open(file, 'r').catch(() => null);
  if (!handle) return [];
  try {
    const { size } = await handle.stat();
    const length = Math.min(size, 64 * 1024);
    const buffer = Buffer.alloc(length);
    await handle.read(buffer, 0, length, size - length);
    const lines = buffer.toString('utf8').split('\n').filter((line) => line.trim() !== '');
    // The first line may be cut in the middle when the tail starts inside it.
    if (length < size) lines.shift();
    return lines.slice(-count);
  } finally {
    await handle.close();
  }
}
