// What the kernel reports about itself: the shapes of `Kernel.status()`, of the HTTP front door's
// statistics, and so of the control socket's `status` answer. Kept here, in common/, so the CLI
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
}

export interface FrontDoorStats {
  listeners: ListenerStatus[];
  requests: number;
  inFlight: number;
  /** Responses by status class, e.g. { "2xx": 10, "5xx": 1 }. */
  responses: Record<string, number>;
}
