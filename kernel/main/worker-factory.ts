// How a service's code becomes a running thread: its bundle (a release's file, its sha256
// checked against the manifest, or an entry bundled now), then a worker that has loaded it, or the
// options of a pool that will. Boot, supervision and swaps all start workers through here, so a
// worker is configured the same way whoever starts it. Runs in the kernel's main thread.

import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { pathToFileURL } from 'node:url';
import { theseusError } from '../common/errors.ts';
import type { LogRecord, ServiceSource } from '../common/protocol.ts';
import { bundleEntry, poolRuntimeBundle, workerRuntimeBundle, type Bundle } from '../release/bundler.ts';
import type { ResolvedKernelOptions } from './kernel-context.ts';
import type { PoolOptions } from './pool-host.ts';
import { ServiceWorker } from './service-worker.ts';
import { SpareWorkers } from './spare-workers.ts';
import type { ServiceClient } from '../common/client.ts';

export interface WorkerFactoryHooks {
  /** Every log line of the services (their own records) goes here. */
  emit(record: LogRecord): void;
  /** The kernel's own log lines. */
  log(level: LogRecord['level'], message: string): void;
  /** A worker has changed its state enough times that a checkpoint is due. */
  checkpointDue(service: string): void;
  /** For pool threads' calls to stateful services: a main-thread client of its own, and every service's casts. */
  openClient(service: string): ServiceClient;
  casts(): Record<string, string[]>;
}

export class WorkerFactory {
  readonly #options: ResolvedKernelOptions;
  readonly #hooks: WorkerFactoryHooks;

  /** Warm spares (spare-workers.ts); the kernel holds them during a swap and ends them at stop. */
  readonly spares: SpareWorkers;

  constructor(options: ResolvedKernelOptions, hooks: WorkerFactoryHooks) {
    this.#options = options;
    this.#hooks = hooks;
    // The old swap path starts every worker from nothing, as it did before spares existed.
    const wanted = options.swapPath === 'through-kernel' ? 0 : options.spareWorkers;
    this.spares = new SpareWorkers(wanted, async () => (await workerRuntimeBundle(options.cacheDir)).file, (level, message) => hooks.log(level, message));
  }

  async bundle(source: ServiceSource, service: string): Promise<Bundle> {
    if (source.bundle) {
      // A release's bundle: load exactly the bytes the manifest vouched for.
      const { file, sha256 } = source.bundle;
      const contents = await readFile(file).catch(() => null);
      if (contents === null) throw theseusError('E_RELEASE_MISSING_FILE', file);
      const actual = createHash('sha256').update(contents).digest('hex');
      if (actual !== sha256) throw theseusError('E_RELEASE_HASH_MISMATCH', file, sha256, actual);
      return { file, url: pathToFileURL(file).href, sha256 };
    }
    if (!source.entry) throw theseusError('E_BAD_OPTIONS', `service '${service}'`, 'give either entry (a module to bundle) or bundle (a prebuilt release bundle)');
    return bundleEntry(source.entry, this.#options.cacheDir, service);
  }

  /**
   * A worker that has loaded the bundle and reported its descriptor, but not started. With
   * `spare`, a warm spare becomes it when one is ready (then another is started in its place,
   * unless a swap holds the pool); otherwise, or when none is, a new thread boots.
   */
  async loadWorker(service: string, release: string, bundle: Bundle, source: ServiceSource, spare = false): Promise<ServiceWorker> {
    const runtimeFile = (await workerRuntimeBundle(this.#options.cacheDir)).file;
    const thread = spare ? this.spares.take() : null;
    const loading = ServiceWorker.load({
      service,
      release,
      moduleUrl: bundle.url,
      staticDir: source.staticDir ?? null,
      config: source.config ?? {},
      // In reply durability the worker writes its own state, so it never asks the kernel to.
      checkpointEveryChanges: source.durability === 'reply' ? 0 : this.#options.checkpointEveryChanges,
      durableStateDir: source.durability === 'reply' ? (this.#options.stateDir ?? null) : null,
      onCheckpointDue: () => this.#hooks.checkpointDue(service),
      runtimeFile,
      bootTimeoutMs: this.#options.bootTimeoutMs,
      onLog: (record) => this.#hooks.emit(record),
      spare: thread,
    });
    if (!thread) return loading;
    // Its replacement boots once this worker has loaded, so the two do not compete for the cores.
    return loading.finally(() => this.spares.fill());
  }

  async poolOptions(service: string): Promise<PoolOptions> {
    return {
      service,
      runtimeFile: (await poolRuntimeBundle(this.#options.cacheDir)).file,
      bootTimeoutMs: this.#options.bootTimeoutMs,
      drainTimeoutMs: this.#options.drainTimeoutMs,
      onLog: (record) => this.#hooks.emit(record),
      log: (level, message) => this.#hooks.log(level, message),
      openClient: (other) => this.#hooks.openClient(other),
      casts: () => this.#hooks.casts(),
    };
  }
}
