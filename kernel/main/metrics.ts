// The kernel's Prometheus metrics, kept in a prom-client registry. Runs in the kernel's main thread.
//
// Most figures live elsewhere and are read when asked for (a scrape, or the dashboard's tick):
// each worker counts its own calls (kernel/common/call-metrics.ts), the kernel's status gives
// in-flight, queued, heap and restarts, the front door its requests, and the checkpoint files
// their size and age. Swaps are counted here as they end. A worker's counters die with it (a
// swap or a crash), so the last copy seen of each is kept and added to its release's total.

import { stat } from 'node:fs/promises';
import { Counter, Gauge, Histogram, Registry, type Metric } from 'prom-client';
import { CallMetrics, LATENCY_BUCKETS_SECONDS, addSnapshots, emptySnapshot, type CallMetricsSnapshot } from '../common/call-metrics.ts';
import { checkpointFile } from '../common/checkpoints.ts';
import type { FrontDoorStats, ServiceStatus } from '../common/status.ts';
import type { SwapRecord } from './admin/tick.ts';

export type { SwapRecord } from './admin/tick.ts';

/** Where the figures come from: the kernel, its front door and its state folder. */
export interface MetricsSource {
  status(): Promise<ServiceStatus[]>;
  callMetrics(): Promise<Array<{ service: string; release: string; threadId: number; snapshot: CallMetricsSnapshot | null }>>;
  /** Null while the release declares no HTTP front door. */
  frontDoor(): { stats: FrontDoorStats; openConnections: number } | null;
  /** The folder of the services' checkpoints (null: the kernel keeps none). */
  stateDir: string | null;
}

/** What one collection read: the dashboard shows the same figures the scrape exposes. */
export interface Collected {
  at: number;
  services: Array<ServiceStatus & { calls: CallMetricsSnapshot; stateBytes: number | null; checkpointAgeSeconds: number | null }>;
  frontDoor: { stats: FrontDoorStats; openConnections: number } | null;
}

interface ReleaseCalls {
  /** The last copy seen of each worker that no longer serves. */
  retired: CallMetricsSnapshot;
  live: Map<number, CallMetricsSnapshot>;
}

const SWAP_SECONDS_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export class KernelMetrics {
  readonly registry = new Registry();
  #source: MetricsSource;
  #calls = new Map<string, ReleaseCalls>();
  /** Collections run one at a time: each resets and refills the registry's figures. */
  #queue: Promise<unknown> = Promise.resolve();
  readonly swaps: SwapRecord[] = [];

  #callsTotal: Counter<'service' | 'release' | 'outcome'>;
  #castsTotal: Counter<'service' | 'release' | 'outcome'>;
  #callLatency: CollectedHistogram;
  #inFlight: Gauge<'service' | 'release'>;
  #queued: Gauge<'service' | 'release'>;
  #heap: Gauge<'service' | 'release'>;
  #restarts: Counter<'service'>;
  #info: Gauge<'service' | 'release' | 'vsn' | 'state'>;
  #stateBytes: Gauge<'service'>;
  #checkpointAge: Gauge<'service'>;
  #swapsTotal: Counter<'op' | 'outcome'>;
  #swapPause: Histogram<'service'>;
  #swapPhase: Histogram<'phase'>;
  #httpRequests: Counter<'code'>;
  #httpInFlight: Gauge;
  #httpConnections: Gauge;
  #wsConnections: Gauge;
  #wsOpened: Counter;
  #wsClosed: Counter<'reason'>;
  #wsRefused: Counter;
  #wsBufferedBytes: Gauge;
  #wsWaitingEvents: Gauge;
  #wsInputPauses: Counter;
  /** The front door's requests as its clients wait for them, swaps' pauses included. */
  readonly httpLatency = new CallMetrics();
  #httpDuration: CollectedHistogram;

  constructor(source: MetricsSource) {
    this.#source = source;
    const registers = [this.registry];
    const perRelease = ['service', 'release'] as const;
    this.#callsTotal = new Counter({ name: 'theseus_calls_total', help: 'Calls a service answered, by outcome (ok, or error: failed or refused).', labelNames: [...perRelease, 'outcome'], registers });
    this.#castsTotal = new Counter({ name: 'theseus_casts_total', help: 'Casts a service ran, by outcome.', labelNames: [...perRelease, 'outcome'], registers });
    this.#callLatency = new CollectedHistogram('theseus_call_duration_seconds', 'From the worker starting the message that holds a call to its reply; a batch counts each call with the batch time. Queueing before the worker takes the message is not included.');
    this.registry.registerMetric(this.#callLatency as unknown as Metric);
    this.#inFlight = new Gauge({ name: 'theseus_calls_in_flight', help: 'Handlers running now (a service runs one at a time).', labelNames: perRelease, registers });
    this.#queued = new Gauge({ name: 'theseus_calls_queued', help: 'Messages the worker has taken and not started.', labelNames: perRelease, registers });
    this.#heap = new Gauge({ name: 'theseus_worker_heap_bytes', help: "V8 heap used by the service's worker thread.", labelNames: perRelease, registers });
    this.#restarts = new Counter({ name: 'theseus_restarts_total', help: "Times supervision restarted the service's worker after a crash.", labelNames: ['service'], registers });
    this.#info = new Gauge({ name: 'theseus_service_info', help: 'Always 1: the release, state vsn and lifecycle state each service runs.', labelNames: ['service', 'release', 'vsn', 'state'], registers });
    this.#stateBytes = new Gauge({ name: 'theseus_state_bytes', help: "Size of the service's last checkpoint file.", labelNames: ['service'], registers });
    this.#checkpointAge = new Gauge({ name: 'theseus_checkpoint_age_seconds', help: "Time since the service's last checkpoint was written.", labelNames: ['service'], registers });
    this.#swapsTotal = new Counter({ name: 'theseus_swaps_total', help: 'Upgrades and downgrades, by outcome as the audit trail records it.', labelNames: ['op', 'outcome'], registers });
    this.#swapPause = new Histogram({ name: 'theseus_swap_pause_seconds', help: 'How long a swap kept a service from starting handlers.', labelNames: ['service'], buckets: SWAP_SECONDS_BUCKETS, registers });
    this.#swapPhase = new Histogram({ name: 'theseus_swap_phase_duration_seconds', help: "Each upgrade phase's time.", labelNames: ['phase'], buckets: SWAP_SECONDS_BUCKETS, registers });
    this.#httpRequests = new Counter({ name: 'theseus_http_requests_total', help: 'Requests the HTTP front door answered, by status class (2xx, 4xx, 5xx).', labelNames: ['code'], registers });
    this.#httpInFlight = new Gauge({ name: 'theseus_http_requests_in_flight', help: 'Requests waiting for their services.', registers });
    this.#httpDuration = new CollectedHistogram('theseus_http_request_duration_seconds', "The front door's routed requests, from dispatch to answer, to the millisecond: what a client waits for, a swap's pause included.");
    this.registry.registerMetric(this.#httpDuration as unknown as Metric);
    this.#httpConnections = new Gauge({ name: 'theseus_http_open_connections', help: 'Open connections to the HTTP front door.', registers });
    this.#wsConnections = new Gauge({ name: 'theseus_websocket_connections', help: 'WebSocket connections open now.', registers });
    this.#wsOpened = new Counter({ name: 'theseus_websocket_connections_opened_total', help: 'WebSocket connections accepted since the kernel started.', registers });
    this.#wsClosed = new Counter({ name: 'theseus_websocket_closed_by_kernel_total', help: 'WebSocket connections the kernel closed: slow (1013, the client did not read), failed (1011, a handler failed), dead (no pong).', labelNames: ['reason'], registers });
    this.#wsRefused = new Counter({ name: 'theseus_websocket_upgrades_refused_total', help: 'WebSocket upgrade requests refused: no route, over maxConnections, or while stopping.', registers });
    this.#wsBufferedBytes = new Gauge({ name: 'theseus_websocket_buffered_bytes', help: 'Bytes written to WebSocket connections and not yet taken by their clients.', registers });
    this.#wsWaitingEvents = new Gauge({ name: 'theseus_websocket_waiting_events', help: 'WebSocket events received and waiting in the main thread for their services.', registers });
    this.#wsInputPauses = new Counter({ name: 'theseus_websocket_input_pauses_total', help: "Times a service's WebSocket connections stopped being read because its events piled up (maxWaitingEvents).", registers });
  }

  /** An upgrade or downgrade ended. */
  recordSwap(record: SwapRecord): void {
    this.swaps.push(record);
    // The dashboard's timeline shows the recent ones; the counters keep counting.
    if (this.swaps.length > 50) this.swaps.shift();
    this.#swapsTotal.inc({ op: record.op, outcome: record.outcome });
    for (const [phase, ms] of Object.entries(record.phaseMs)) this.#swapPhase.observe({ phase }, ms / 1000);
    for (const [service, ms] of Object.entries(record.pauseMs)) this.#swapPause.observe({ service }, ms / 1000);
  }

  /** The text a Prometheus scrape reads. */
  async exposition(): Promise<{ contentType: string; body: string }> {
    return this.#serially(async () => {
      this.#fill(await this.#gather());
      return { contentType: this.registry.contentType, body: await this.registry.metrics() };
    });
  }

  /** The figures, read now, for the dashboard. */
  collect(): Promise<Collected> {
    return this.#serially(() => this.#gather());
  }

  #serially<T>(work: () => Promise<T>): Promise<T> {
    const next = this.#queue.catch(() => undefined).then(work);
    this.#queue = next;
    return next;
  }

  async #gather(): Promise<Collected> {
    const [status, calls] = await Promise.all([this.#source.status(), this.#source.callMetrics()]);
    const seen = new Set<string>();
    for (const { service, release, threadId, snapshot } of calls) {
      const key = `${service}\0${release}`;
      // A worker that did not answer this time (busy past the timeout) still serves: its last
      // copy stays live, or it would be counted again as retired when it answers next time.
      seen.add(`${key}\0${threadId}`);
      if (!snapshot) continue;
      let entry = this.#calls.get(key);
      if (!entry) this.#calls.set(key, (entry = { retired: emptySnapshot(), live: new Map() }));
      entry.live.set(threadId, snapshot);
    }
    for (const [key, entry] of this.#calls) {
      for (const [threadId, snapshot] of entry.live) {
        if (seen.has(`${key}\0${threadId}`)) continue;
        entry.retired = addSnapshots(entry.retired, snapshot);
        entry.live.delete(threadId);
      }
    }
    const now = Date.now();
    const services = await Promise.all(
      status.map(async (service) => {
        const file = this.#source.stateDir ? await stat(checkpointFile(this.#source.stateDir, service.name)).catch(() => null) : null;
        return {
          ...service,
          calls: this.callsOf(service.name, service.release),
          stateBytes: file ? file.size : null,
          checkpointAgeSeconds: file ? Math.max(0, (now - file.mtimeMs) / 1000) : null,
        };
      }),
    );
    return { at: now, services, frontDoor: this.#source.frontDoor() };
  }

  /** Every service and release whose calls were counted so far. */
  releasesSeen(): Array<{ service: string; release: string }> {
    return [...this.#calls.keys()].map((key) => {
      const [service, release] = key.split('\0') as [string, string];
      return { service, release };
    });
  }

  /** A service's calls under one release, retired workers included. */
  callsOf(service: string, release: string): CallMetricsSnapshot {
    const entry = this.#calls.get(`${service}\0${release}`);
    if (!entry) return emptySnapshot();
    let total = entry.retired;
    for (const snapshot of entry.live.values()) total = addSnapshots(total, snapshot);
    return total;
  }

  /** Resets the figures read from elsewhere and sets them again from one collection. */
  #fill(collected: Collected): void {
    for (const metric of [this.#callsTotal, this.#castsTotal, this.#inFlight, this.#queued, this.#heap, this.#restarts, this.#info, this.#stateBytes, this.#checkpointAge, this.#httpRequests, this.#wsOpened, this.#wsClosed, this.#wsRefused, this.#wsInputPauses]) metric.reset();
    this.#callLatency.clear();
    for (const { service, release } of this.releasesSeen()) {
      const calls = this.callsOf(service, release);
      const labels = { service, release };
      this.#callsTotal.inc({ ...labels, outcome: 'ok' }, calls.callsOk);
      this.#callsTotal.inc({ ...labels, outcome: 'error' }, calls.callsFailed);
      this.#castsTotal.inc({ ...labels, outcome: 'ok' }, calls.castsOk);
      this.#castsTotal.inc({ ...labels, outcome: 'error' }, calls.castsFailed);
      this.#callLatency.set(labels, calls);
    }
    for (const service of collected.services) {
      const labels = { service: service.name, release: service.release };
      this.#inFlight.set(labels, service.inFlight);
      this.#queued.set(labels, service.queued);
      this.#heap.set(labels, service.heapUsed);
      this.#restarts.inc({ service: service.name }, service.restarts);
      this.#info.set({ ...labels, vsn: service.vsn, state: service.state }, 1);
      if (service.stateBytes !== null) this.#stateBytes.set({ service: service.name }, service.stateBytes);
      if (service.checkpointAgeSeconds !== null) this.#checkpointAge.set({ service: service.name }, service.checkpointAgeSeconds);
    }
    const door = collected.frontDoor;
    this.#httpInFlight.set(door?.stats.inFlight ?? 0);
    this.#httpConnections.set(door?.openConnections ?? 0);
    for (const [code, count] of Object.entries(door?.stats.responses ?? {})) this.#httpRequests.inc({ code }, count);
    const sockets = door?.stats.websockets;
    this.#wsConnections.set(sockets?.open ?? 0);
    this.#wsBufferedBytes.set(sockets?.bufferedBytes ?? 0);
    this.#wsWaitingEvents.set(sockets?.waitingEvents ?? 0);
    if (sockets) {
      this.#wsOpened.inc(sockets.opened);
      this.#wsRefused.inc(sockets.refused);
      this.#wsInputPauses.inc(sockets.inputPauses);
      this.#wsClosed.inc({ reason: 'slow' }, sockets.closedSlow);
      this.#wsClosed.inc({ reason: 'failed' }, sockets.closedFailed);
      this.#wsClosed.inc({ reason: 'dead' }, sockets.closedDead);
    }
    this.#httpDuration.clear();
    if (door) this.#httpDuration.set({}, this.httpLatency.snapshot());
  }
}

/**
 * A histogram whose buckets were counted elsewhere (in the workers): prom-client's Histogram only
 * observes values one at a time, so this hands the registry the bucket counts in the shape its
 * own histograms give, and prom-client writes the exposition.
 */
class CollectedHistogram {
  readonly name: string;
  readonly help: string;
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  #series: Array<{ labels: Record<string, string>; snapshot: CallMetricsSnapshot }> = [];

  constructor(name: string, help: string) {
    this.name = name;
    this.help = help;
  }

  clear(): void {
    this.#series = [];
  }

  set(labels: Record<string, string>, snapshot: CallMetricsSnapshot): void {
    this.#series.push({ labels, snapshot });
  }

  get(): { name: string; help: string; type: string; aggregator: string; values: Array<{ metricName: string; labels: Record<string, string | number>; value: number }> } {
    const values = this.#series.flatMap(({ labels, snapshot }) => {
      let cumulative = 0;
      const buckets = snapshot.latencyBuckets.map((count, index) => {
        cumulative += count;
        return { metricName: `${this.name}_bucket`, labels: { ...labels, le: index < LATENCY_BUCKETS_SECONDS.length ? LATENCY_BUCKETS_SECONDS[index]! : '+Inf' }, value: cumulative };
      });
      return [...buckets, { metricName: `${this.name}_sum`, labels, value: snapshot.latencySumSeconds }, { metricName: `${this.name}_count`, labels, value: cumulative }];
    });
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
}
