// What the kernel's parts share: its services, its options (the public KernelOptions live here),
// and how to bundle code and boot a worker. Kernel (the facade) owns one and lends it to its parts
// (boot, supervision, checkpoints), so each depends on this small surface, not on the Kernel
// class. Runs in the kernel's main thread.

import type { LogRecord, ServiceSource } from '../common/protocol.ts';
import type { Bundle } from '../release/bundler.ts';
import type { PoolHost } from './pool-host.ts';
import type { ServiceHost } from './service-host.ts';
import type { ServiceWorker } from './service-worker.ts';

export interface KernelOptions {
  /** The release version the services start at (e.g. "0.1.0"). */
  release: string;
  /**
   * Each service's code: an entry module (TypeScript or JavaScript, bundled with esbuild before it
   * runs) or a prebuilt bundle from a release.
   */
  services: Record<string, ServiceSource>;
  /** How long a suspending service may take to finish in-flight handlers. Default 5000 ms. */
  drainTimeoutMs?: number;
  /** How long a new worker may take to load its module. Default 10000 ms. */
  bootTimeoutMs?: number;
  /** How long init() may take. Default 10000 ms. */
  initTimeoutMs?: number;
  /** Timeout of every other control request to a worker. Default 10000 ms. */
  controlTimeoutMs?: number;
  /**
   * The pre-copy of keyed stores in a swap: it stops once a round sent at most `stopAtKeys` keys
   * (default 512; the rest goes in the pause), or after `maxRounds` rounds (default 8) when the
   * service writes keys faster than a round sends them. `maxRounds: 0` turns pre-copy off: the
   * whole store then moves inside the pause.
   */
  precopy?: { maxRounds?: number; stopAtKeys?: number };
  /** Where bundles are written. Default: a per-user folder under the OS temp dir. */
  cacheDir?: string;
  /** Receives every log line of the services and of the kernel. Default: stderr. */
  onLog?: (record: LogRecord) => void;
  /**
   * Where checkpoints go (`<stateDir>/<service>.ckpt`). With it, services resume from their
   * checkpoint at start, and are checkpointed at stop, after every committed swap, every
   * `checkpointIntervalMs` and every `checkpointEveryChanges` state changes. Without it, state
   * lives as long as the process.
   */
  stateDir?: string;
  /** Default 1000 ms; 0 turns the timer off. */
  checkpointIntervalMs?: number;
  /** Default 1000 changes; 0 turns it off. */
  checkpointEveryChanges?: number;
  /** Supervision: a crashed worker is restarted at most this many times within restartWindowMs (default 3). */
  maxRestarts?: number;
  /** Default 5000 ms. */
  restartWindowMs?: number;
  /**
   * The services of an installed release, by version: lets a checkpoint taken by a newer release
   * be migrated down in that release's own code when an older one boots.
   */
  resolveRelease?: (version: string) => Promise<Record<string, ServiceSource> | null>;
  /**
   * Worker threads kept booted with the worker runtime and no service code (default 1; 0: none). A
   * swap's new workers, and supervision's restarts, become one of these instead of starting a
   * thread; they are replaced once the swap is over.
   */
  spareWorkers?: number;
  /**
   * Internal, for measuring: how a swap carries the state. 'direct' (the default): the old worker
   * sends it straight to the new one. 'through-kernel': as before that existed, through the main
   * thread, which keeps a copy; no warm spares either.
   */
  swapPath?: SwapPath;
}

export type SwapPath = 'direct' | 'through-kernel';

/** Kernel options with every default filled in. */
export type ResolvedKernelOptions = KernelOptions &
  Required<Pick<KernelOptions, 'drainTimeoutMs' | 'bootTimeoutMs' | 'initTimeoutMs' | 'controlTimeoutMs' | 'cacheDir' | 'checkpointIntervalMs' | 'checkpointEveryChanges' | 'maxRestarts' | 'restartWindowMs' | 'spareWorkers' | 'swapPath'>>;

export interface KernelContext {
  readonly hosts: ReadonlyMap<string, ServiceHost>;
  readonly pools: ReadonlyMap<string, PoolHost>;
  readonly options: ResolvedKernelOptions;
  /** Whether the kernel runs (not starting, stopping or stopped): parts stop acting otherwise. */
  running(): boolean;
  log(level: LogRecord['level'], message: string, data?: unknown): void;
  /** A service's code as a bundle: a release's file (its sha256 checked) or an entry bundled now. */
  bundle(source: ServiceSource, service: string): Promise<Bundle>;
  /** Boots a worker that has loaded the bundle and reported its descriptor, but not started; `spare`: from a warm spare when one is ready. */
  loadWorker(service: string, release: string, bundle: Bundle, source: ServiceSource, spare?: boolean): Promise<ServiceWorker>;
  /** A crashed worker's successor serves (a restart, or a revert after a crash on probation). */
  restarted?(service: string): void;
  /** Supervision gave up on a service: it is failed for good. */
  gaveUp?(service: string): void;
}
