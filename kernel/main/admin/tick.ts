// What the dashboard page receives each tick, over server-sent events: the shapes shared by the
// kernel's side (dashboard-feed.ts) and the page (page/main.ts), so this file imports nothing.

/** One upgrade or downgrade as it ended, from its audit line and its report. */
export interface SwapRecord {
  op: 'upgrade' | 'downgrade';
  from: string;
  to: string | null;
  /** As the audit line says: ok, refused, rolled-back, failed, revert-failed. */
  outcome: string;
  /** Epoch ms. */
  startedAt: number;
  endedAt: number;
  /** Each phase's time in ms, as the audit line records it. */
  phaseMs: Record<string, number>;
  /** Each switched service's pause in ms. */
  pauseMs: Record<string, number>;
}

export interface DashboardService {
  name: string;
  release: string;
  vsn: string;
  state: string;
  calls: number;
  /** Calls answered per second since the previous tick (null at the first). */
  callsPerSecond: number | null;
  /** The 99th percentile of call latency since the previous tick, in ms (null without calls). */
  p99Ms: number | null;
  errors: number;
  inFlight: number;
  queued: number;
  heapBytes: number;
  restarts: number;
  stateBytes: number | null;
  checkpointAgeSeconds: number | null;
}

export interface DashboardTick {
  at: number;
  app: string;
  release: string;
  pid: number;
  uptimeMs: number;
  services: DashboardService[];
  /** Every service's calls together, for the chart. */
  total: { callsPerSecond: number | null; p99Ms: number | null };
  /** The front door: its p99 since the previous tick is what clients waited, a swap's pause included. */
  http: { requests: number; openConnections: number; inFlight: number; requestsPerSecond: number | null; p99Ms: number | null } | null;
  swaps: SwapRecord[];
  releases: Array<{ version: string; status: string; running: boolean }>;
  audit: string[];
}

