// What the kernel's parts share: its services, its resolved options, and how to bundle code and
// boot a worker. Kernel (the facade) owns one and lends it to its parts (supervision, checkpoints),
// so each part depends on this small surface, not on the Kernel class. Runs in the main thread.

import type { LogRecord, ServiceSource } from '../common/protocol.ts';
import type { Bundle } from '../release/bundler.ts';
import type { PoolHost } from './pool-host.ts';
import type { ServiceHost } from './service-host.ts';
import type { ServiceWorker } from './service-worker.ts';

/** Kernel options with every default filled in. */
export interface ResolvedKernelOptions {
  release: string;
  services: Record<string, ServiceSource>;
  drainTimeoutMs: number;
  bootTimeoutMs: number;
  initTimeoutMs: number;
  controlTimeoutMs: number;
  cacheDir: string;
  onLog?: (record: LogRecord) => void;
  stateDir?: string;
  checkpointIntervalMs: number;
  checkpointEveryChanges: number;
  maxRestarts: number;
  restartWindowMs: number;
  resolveRelease?: (version: string) => Promise<Record<string, ServiceSource> | null>;
}

export interface KernelContext {
  readonly hosts: ReadonlyMap<string, ServiceHost>;
  readonly pools: ReadonlyMap<string, PoolHost>;
  readonly options: ResolvedKernelOptions;
  /** Whether the kernel runs (not starting, stopping or stopped): parts stop acting otherwise. */
  running(): boolean;
  log(level: LogRecord['level'], message: string, data?: unknown): void;
  /** A service's code as a bundle: a release's file (its sha256 checked) or an entry bundled now. */
  bundle(source: ServiceSource, service: string): Promise<Bundle>;
  /** Boots a worker that has loaded the bundle and reported its descriptor, but not started. */
  loadWorker(service: string, release: string, bundle: Bundle, source: ServiceSource): Promise<ServiceWorker>;
}
