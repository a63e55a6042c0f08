// What the kernel reports about itself: the shapes of `Kernel.status()`, of the HTTP front door's
// statistics and of each service's swap, and so of the control socket's answers. Kept here, in common/, so the CLI
// and the wire protocol can name them without loading the kernel.

import type { Durability } from './protocol.ts';

/** A hosted service's lifecycle (see kernel/main/service-host.ts for its transitions). */
export type HostState = 'starting' | 'running' | 'swapping' | 'restarting' | 'crashed' | 'stopping' | 'stopped' | 'failed';

/** The last swap a service went through. */
export interface LastSwap {
  fromRelease: string;
  toRelease: string;
  at: number;
  pauseMs: number;
  outcome: string;
}

/** The last state of a service a release removed, kept for a release that brings it back. */
export interface KeptState {
  service: string;
  /** The release whose code wrote it, and the state's vsn. */
  release: string;
  vsn: string;
  /** ISO time it was written. */
  at: string;
  bytes: number;
  /** Set when the checkpoint cannot be read: a release that brings the service back will say why. */
  problem?: string;
}

/** One service, as `kernel status` shows it. */
export interface ServiceStatus {
  name: string;
  state: HostState;
  release: string;
  vsn: string;
  threadId: number;
  uptimeMs: number;
  callsServed: number;
  castsServed: number;
  inFlight: number;
  queued: number;
  heapUsed: number;
  /** What a kill -9 can lose of its state (see Durability); 'none' for a pooled service, which keeps none. */
  durability: Durability | 'none';
  /** Reply durability: the state writes so far (each one fsync of the file and one of its folder). */
  durableWrites: number;
  failure: string | null;
  /** How many times supervision restarted the service's worker after a crash. */
  restarts: number;
  lastSwap: LastSwap | null;
  /** A pooled service's pool: its size and the threads serving it (threadId is the first of them). */
  pool?: { size: number; threadIds: number[] };
}

export interface ListenerStatus {
  host: string;
  /** The port asked for in the config (0: any free port). */
  configuredPort: number;
  /** The port actually bound. */
  port: number;
  routes: string[];
  /** Its WebSocket routes ("/chat -> chat"), when it has any. */
  websockets?: string[];
}

/** The WebSocket front door's counters (kernel/main/websockets.ts). */
export interface WebSocketStats {
  /** Connections open now, and since the kernel started. */
  open: number;
  opened: number;
  /** Upgrade requests refused: no route, over maxConnections, or while stopping. */
  refused: number;
  /** Connections closed because the client did not read (1013). */
  closedSlow: number;
  /** Connections closed because a handler failed for them (1011). */
  closedFailed: number;
  /** Connections ended because they missed a pong. */
  closedDead: number;
  /** Bytes written to connections and not yet taken by the clients, now. */
  bufferedBytes: number;
  /** Events received and waiting in the main thread for their services, now and at most so far. */
  waitingEvents: number;
  maxWaitingEvents: number;
  /** Times a service's connections stopped being read because its events piled up. */
  inputPauses: number;
  limits: { maxPayloadBytes: number; maxBufferedBytes: number; maxConnections: number; pingIntervalMs: number; maxWaitingEvents: number };
}

export interface FrontDoorStats {
  listeners: ListenerStatus[];
  requests: number;
  inFlight: number;
  /** Responses by status class, e.g. { "2xx": 10, "5xx": 1 }. */
  responses: Record<string, number>;
  /** The WebSocket connections: how many, what closed them, what waits unsent. */
  websockets?: WebSocketStats;
}

/** One service's part in a swap: what changed, how, and how long it paused. */
export interface ServiceSwapReport {
  service: string;
  from: { release: string; vsn: string };
  to: { release: string; vsn: string };
  /** What changed: the code (its state vsn too, or not), only its config or static files, or nothing. */
  change: 'vsn' | 'code' | 'config' | 'none' | 'added' | 'removed';
  /** e.g. "0 -> 1 (up, in 0.3.0)" or "none". */
  migration: string;
  stateBytes: number;
  /**
   * How long no handler of the service could start, on either side: from the old worker starting
   * no more handlers to the new worker listening, in ms. 0 when not switched.
   */
  pauseMs: number;
  /** The part of the pause the old code spent finishing the one handler it was running. */
  drainMs: number;
  /**
   * Messages the old worker had taken but not started: they went to the new worker with the
   * ports, ahead of what still waited in them (or back to the old one on a roll-back).
   */
  carried: number;
  /**
   * A keyed store copied while the old code served: the rounds, the entries and bytes sent in
   * them, and the last round's entries. The keys written after it went in the pause.
   */
  precopy?: { rounds: number; entries: number; bytes: number; lastRound: number };
  /** 'failed-after-switch': the new worker died as it took over; its service is marked failed. */
  outcome: 'switched' | 'unchanged' | 'rolled-back' | 'not-started' | 'failed-after-switch';
}

/** The kernel's health, as GET /_theseus/health answers it (kernel/main/health.ts). */
export type HealthStatus = 'starting' | 'ok' | 'draining';

export interface HealthReport {
  status: HealthStatus;
  /** The release running (null before the first one booted). */
  release: string | null;
  pid: number;
  uptimeMs: number;
  /** How long a stop keeps answering "draining" before its listeners close. */
  stopGraceMs: number;
  /** While draining: how long ago the stop began. */
  drainingForMs?: number;
}
