// The kernel: hosts each service in its own worker thread, hands out typed clients, and runs hot
// swaps. This is the small public facade; the swap itself lives in hot-swap.ts.

import { TheseusError, errorMessage, serializeError, theseusError, type SwapPhase } from '../common/errors.ts';
import { createHash } from 'node:crypto';
import semver from 'semver';
import { readFile } from 'node:fs/promises';
import { pathToFileURL } from 'node:url';
import { findMigrationPath } from '../common/migrations.ts';
import { decodeHttpRequest, encodeHttpReply, type WireHttpRequest } from '../common/http-codec.ts';
import { BATCH_HTTP, createLink, REPLY_ERROR, REPLY_OK, sameDescriptor, sameSettings, type BatchedCall, type BatchedResult, type InboundLink, type LogRecord, type PortSet, type ServiceDescriptor, type ServiceSource, type StateSnapshot } from '../common/protocol.ts';
import { readCheckpoint, writeCheckpoint } from '../common/checkpoints.ts';
import { bundleEntry, defaultCacheDir, poolRuntimeBundle, workerRuntimeBundle, type Bundle } from '../release/bundler.ts';
import { HotSwap, SwapError, type ServiceSwapReport, type SwapReport, type SwapTarget } from './hot-swap.ts';
import { PoolHost, type PoolGeneration, type PoolOptions } from './pool-host.ts';
import type { HostState, ServiceStatus } from '../common/status.ts';
import { ServiceHost } from './service-host.ts';
import { ServiceWorker } from './service-worker.ts';

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
}

type KernelState = 'starting' | 'running' | 'stopping' | 'stopped';

export class Kernel {
  #state: KernelState = 'starting';
  #hosts = new Map<string, ServiceHost>();
  /** Pooled (stateless) services, each on a piscina pool; never in #hosts. */
  #pools = new Map<string, PoolHost>();
  #options: Required<Omit<KernelOptions, 'onLog' | 'stateDir' | 'resolveRelease'>> & Pick<KernelOptions, 'onLog' | 'stateDir' | 'resolveRelease'>;
  #checkpointTimer: NodeJS.Timeout | null = null;
  /** Checkpoints in progress, by service, so two never overlap. */
  #checkpointing = new Map<string, Promise<void>>();
  /** Restarts in progress; stop() waits for them so no worker outlives it. */
  #restarting = new Set<Promise<void>>();
  /** Told when a service on probation crashes (see probationCrashes). */
  #probationListeners = new Set<(service: string, reason: string) => void>();
  #swap: HotSwap | null = null;
  #swapDone: Promise<SwapReport> | null = null;
  /** The newest release a swap committed (or the first one); labels the kernel's own log lines. */
  #release: string;
  readonly startedAt = Date.now();

  private constructor(options: KernelOptions) {
    this.#options = {
      drainTimeoutMs: 5000,
      bootTimeoutMs: 10_000,
      initTimeoutMs: 10_000,
      controlTimeoutMs: 10_000,
      cacheDir: defaultCacheDir(),
      checkpointIntervalMs: 1000,
      checkpointEveryChanges: 1000,
      maxRestarts: 3,
      restartWindowMs: 5000,
      ...options,
    };
    this.#release = options.release;
  }

  /** Bundles and boots every service, wires the ports between them, and runs their init. */
  static async start(options: KernelOptions): Promise<Kernel> {
    const kernel = new Kernel(options);
    try {
      await kernel.#boot();
    } catch (error) {
      await kernel.stop().catch(() => undefined);
      throw error;
    }
    return kernel;
  }

  /**
   * A typed client of a running service. `dedicated: true` gives the caller its own port (its own
   * ordering and queue); otherwise the main thread shares one client per service.
   */
  client<Api extends object>(service: string, options: { dedicated?: boolean } = {}): Api {
    // A pool has no per-caller channel or ordering to give, so every caller shares its client.
    const pool = this.#pool(service);
    if (pool) return pool.proxy<Api>();
    const host = this.#host(service);
    const client = options.dedicated ? host.newClient() : host.defaultClient();
    return client.proxy<Api>();
  }

  /**
   * Several calls to one service in one message, run one after another as if sent one by one;
   * resolves with each outcome in order. The HTTP front door sends what arrives in one turn this
   * way, because a MessagePort's per-message cost dominates small calls. With `encoding`
   * BATCH_HTTP, each call is a handler and a WireHttpRequest, and each reply comes back encoded
   * (http-codec.ts). A pool runs the calls as separate tasks, since its threads share no state to
   * keep in order.
   */
  callBatch(service: string, calls: BatchedCall[], encoding: '' | typeof BATCH_HTTP = ''): Promise<BatchedResult[]> {
    const pool = this.#pool(service);
    if (pool) {
      const proxy = pool.proxy<Record<string, (...args: unknown[]) => Promise<unknown>>>();
      return Promise.all(
        calls.map(([method, args]) =>
          Promise.resolve()
            .then(() => (encoding === BATCH_HTTP ? proxy[method]!(decodeHttpRequest(args as unknown as WireHttpRequest)) : proxy[method]!(...(args ?? []))))
            .then(
              (value): BatchedResult => {
                if (encoding !== BATCH_HTTP) return [REPLY_OK, value];
                const encoded = encodeHttpReply(value);
                if ('problem' in encoded) return [REPLY_ERROR, serializeError(theseusError('E_HTTP_BAD_REPLY', `${service}.${method}()`, encoded.problem))];
                return [REPLY_OK, encoded];
              },
              (error: unknown): BatchedResult => [REPLY_ERROR, serializeError(error, 'E_HANDLER_FAILED')],
            ),
        ),
      );
    }
    return this.#host(service).defaultClient().callBatch(calls, encoding);
  }

  /** Whether a service runs on a pool (its calls run concurrently, in no particular order). */
  isPooled(service: string): boolean {
    return this.#pools.has(service);
  }

  /** Moves the named services to the target release's code; rejects with a SwapError on failure. */
  async upgrade(target: SwapTarget): Promise<SwapReport> {
    return this.#runSwap(target);
  }

  /** The same machine as upgrade, running the other way: down migrations run in the newer code. */
  async downgrade(target: SwapTarget): Promise<SwapReport> {
    return this.#runSwap(target);
  }

  get swapState(): string {
    // A swap of pooled services only runs no HotSwap machine: it warms, then switches.
    return this.#swap?.state ?? (this.#swapDone ? 'pools' : 'idle');
  }

  get services(): string[] {
    return [...this.#hosts.keys(), ...this.#pools.keys()];
  }

  /** Thread ids of the pool threads currently serving a pooled service. */
  poolThreadIds(service: string): number[] {
    const pool = this.#pool(service);
    if (!pool) throw theseusError('E_UNKNOWN_SERVICE', service, [...this.#pools.keys()].join(', '));
    return [...pool.current.threadIds];
  }

  /** Thread ids of the worker currently serving each stateful service. */
  get threadIds(): number[] {
    return [...this.#hosts.values()].filter((host) => host.current.lifecycle !== 'exited').map((host) => host.current.threadId);
  }

  /** Replies that arrived for calls not pending on the main thread's clients; should stay 0. */
  get strayReplies(): number {
    let total = 0;
    for (const host of this.#hosts.values()) total += host.strayReplies;
    return total;
  }

  async status(): Promise<ServiceStatus[]> {
    const pools = [...this.#pools.values()].map((pool): ServiceStatus => ({
      name: pool.name,
      state: pool.state,
      release: pool.release,
      vsn: pool.descriptor.vsn,
      threadId: pool.current.threadIds[0] ?? 0,
      uptimeMs: Date.now() - pool.startedAt,
      ...pool.stats(),
      // Not measured for pools: each thread has its own heap, and asking would queue behind the calls.
      heapUsed: 0,
      durability: 'none',
      durableWrites: 0,
      failure: pool.failure,
      restarts: 0,
      lastSwap: pool.lastSwap,
      pool: { size: pool.size, threadIds: [...pool.current.threadIds] },
    }));
    const stateful = await Promise.all(
      [...this.#hosts.values()].map(async (host) => {
        const stats = await host.current
          .request('stats', {}, this.#options.controlTimeoutMs)
          .catch(() => ({ callsServed: 0, castsServed: 0, inFlight: 0, queued: 0, heapUsed: 0, durableWrites: 0 }));
        stats.callsServed += host.servedByRetired.calls;
        stats.castsServed += host.servedByRetired.casts;
        return {
          name: host.name,
          state: host.state,
          release: host.release,
          vsn: host.descriptor.vsn,
          threadId: host.current.threadId,
          uptimeMs: Date.now() - host.startedAt,
          ...stats,
          durability: host.source.durability ?? 'periodic',
          failure: host.failure,
          restarts: host.restarts,
          lastSwap: host.lastSwap,
        };
      }),
    );
    return [...stateful, ...pools];
  }

  /** The calls and casts the running code of a service declares. */
  methods(service: string): { calls: readonly string[]; casts: readonly string[] } {
    const { calls, casts } = (this.#pool(service) ?? this.#host(service)).descriptor;
    return { calls, casts };
  }

  /** Runs a service's health() (healthy when it defines none); a failed service is unhealthy. */
  async health(service: string): Promise<{ healthy: boolean; reason?: string }> {
    // A pool has no state for health() to judge: it is healthy while it serves.
    const pool = this.#pool(service);
    if (pool) return pool.state === 'running' ? { healthy: true } : { healthy: false, reason: pool.failure ?? pool.state };
    const host = this.#host(service);
    if (host.state === 'failed') return { healthy: false, reason: host.failure ?? 'failed' };
    if (host.state !== 'running') return { healthy: true, reason: host.state };
    // No health() to run: no need to interrupt the worker (probation asks many times a second).
    if (!host.descriptor.hasHealth) return { healthy: true };
    return host.current.request('health', {}, this.#options.controlTimeoutMs).catch((error: unknown) => ({ healthy: false, reason: errorMessage(error) }));
  }

  /** How many times supervision has restarted each service's worker, without asking any worker. */
  restartCounts(): Record<string, number> {
    const counts: Record<string, number> = {};
    for (const host of this.#hosts.values()) counts[host.name] = host.restarts;
    for (const name of this.#pools.keys()) counts[name] = 0;
    return counts;
  }

  /** Drains every service, runs terminate(), ends the workers and rejects later calls. */
  async stop(): Promise<void> {
    if (this.#state === 'stopped' || this.#state === 'stopping') return;
    this.#state = 'stopping';
    if (this.#checkpointTimer) clearInterval(this.#checkpointTimer);
    // A swap in flight owns ports and workers; let it finish (or roll back) before ending them.
    await this.#swapDone?.catch(() => undefined);
    await Promise.all(this.#checkpointing.values());
    await Promise.all(this.#restarting);
    const poolsStopped = Promise.all([...this.#pools.values()].map((pool) => pool.stop()));
    await Promise.all(
      [...this.#hosts.values()].map(async (host) => {
        const worker = host.current;
        const wasServing = host.state === 'running';
        // Not serving (failed, or never started): there is nothing to drain, only a thread to end.
        host.state = 'stopping';
        worker.expectExit();
        if (wasServing) {
          const stopped = await worker
            .request('stop', { runTerminate: true, reason: 'kernel stop', drainTimeoutMs: this.#options.drainTimeoutMs, snapshot: Boolean(this.#options.stateDir) }, this.#options.drainTimeoutMs + this.#options.controlTimeoutMs)
            .catch((error: unknown) => {
              this.#log('warn', `${host.name} did not stop cleanly: ${errorMessage(error)}`);
              return {} as { snapshot?: StateSnapshot; persisted?: boolean };
            });
          if (stopped.snapshot && this.#options.stateDir && !stopped.persisted) {
            await writeCheckpoint(this.#options.stateDir, host.name, host.release, stopped.snapshot).catch((error: unknown) =>
              this.#log('error', `${host.name}: the final checkpoint could not be written: ${errorMessage(error)}`),
            );
          }
        }
        host.closeClients('the kernel stopped');
        await worker.terminate();
        host.state = 'stopped';
      }),
    );
    await poolsStopped;
    this.#state = 'stopped';
  }

  // -------------------------------------------------------------------------------------------

  async #boot(): Promise<void> {
    const { services, release } = this.#options;
    const names = Object.keys(services);
    if (names.length === 0) throw theseusError('E_BAD_OPTIONS', 'kernel options', 'no services given');
    const replyDurable = names.find((name) => services[name]!.durability === 'reply');
    if (replyDurable && !this.#options.stateDir) {
      throw theseusError('E_BAD_OPTIONS', `service '${replyDurable}'`, "durability 'reply' writes the state to disk before each reply, so the kernel needs a stateDir");
    }
    if (this.#options.stateDir) {
      // A kernel killed mid-write leaves a temporary file; the checkpoint beside it is whole.
      const { readdir, rm } = await import('node:fs/promises');
      for (const name of await readdir(this.#options.stateDir).catch(() => [] as string[])) {
        if (name.endsWith('.tmp')) await rm(`${this.#options.stateDir}/${name}`, { force: true });
      }
    }
    const loaded = await Promise.allSettled(
      names.map(async (name) => {
        const source = services[name]!;
        const bundle = await this.#bundle(source, name);
        if (source.pool) {
          const pool = await PoolHost.start(await this.#poolOptions(name), release, bundle, source);
          // Registered before it is checked, so a refusal below still ends its threads (stop()).
          this.#pools.set(name, pool);
          if (source.descriptor && !sameDescriptor(source.descriptor, pool.descriptor)) {
            throw theseusError('E_DESCRIPTOR_MISMATCH', name, release, JSON.stringify(pool.descriptor), JSON.stringify(source.descriptor));
          }
          if (pool.descriptor.uses.length > 0) throw theseusError('E_POOLED_USES', name, pool.descriptor.uses.join(', '));
          return;
        }
        const worker = await this.#loadWorker(name, release, bundle, source);
        if (source.descriptor && !sameDescriptor(source.descriptor, worker.descriptor)) {
          await worker.terminate();
          throw theseusError('E_DESCRIPTOR_MISMATCH', name, release, JSON.stringify(worker.descriptor), JSON.stringify(source.descriptor));
        }
        const host = new ServiceHost(name, worker, source, bundle, this.#options.controlTimeoutMs);
        this.#watch(host, worker);
        this.#hosts.set(name, host);
      }),
    );
    const failed = loaded.find((result): result is PromiseRejectedResult => result.status === 'rejected');
    if (failed) throw failed.reason;

    // Wire a direct channel for every "A uses B": A keeps the client end, B the service end.
    const portSets = new Map<string, PortSet>(names.map((name) => [name, { inbound: [], outbound: {} }]));
    for (const host of this.#hosts.values()) {
      for (const dependency of host.descriptor.uses) {
        if (this.#pools.has(dependency)) throw theseusError('E_USES_POOLED', host.name, dependency);
        const callee = this.#hosts.get(dependency);
        if (!callee) {
          throw theseusError('E_UNKNOWN_DEPENDENCY', host.name, dependency);
        }
        const { caller, service } = createLink({ calls: callee.descriptor.calls, casts: callee.descriptor.casts });
        portSets.get(host.name)!.outbound[dependency] = caller;
        portSets.get(dependency)!.inbound.push(service);
      }
    }
    await Promise.all(
      [...this.#hosts.values()].map(async (host) => {
        const ports = portSets.get(host.name)!;
        ports.inbound.push(...host.takeInitialCallers());
        const restored = await this.#restoredState(host);
        if (restored) {
          host.lastSnapshot = { snapshot: { vsn: restored.vsn, bytes: restored.bytes.slice() }, release: host.release, at: new Date().toISOString() };
          // Resume from the checkpoint instead of init(): adopt it (migrating up if it is older), then serve.
          await host.current.request('migrate', { snapshot: restored }, this.#options.controlTimeoutMs, [restored.bytes.buffer as ArrayBuffer]);
          await host.current.request('switch', { ports }, this.#options.controlTimeoutMs);
          host.state = 'running';
          for (const link of host.takeInitialCallers()) host.attachCaller(link);
          return;
        }
        await host.current.request('start', { ports }, this.#options.initTimeoutMs).catch((error: unknown) => {
          if (error instanceof TheseusError && error.code === 'E_CONTROL_TIMEOUT') {
            throw theseusError('E_INIT_TIMEOUT', host.name, release, this.#options.initTimeoutMs);
          }
          throw error;
        });
        host.state = 'running';
        for (const link of host.takeInitialCallers()) host.attachCaller(link);
      }),
    );
    this.#state = 'running';
    if (this.#options.checkpointIntervalMs > 0) {
      this.#checkpointTimer = setInterval(() => void this.checkpoint().catch(() => undefined), this.#options.checkpointIntervalMs);
      this.#checkpointTimer.unref();
    }
  }

  /**
   * The state a service resumes from: its checkpoint, converted to the booting code's vsn (a newer
   * one, say from a trial release that a restart reverted, is migrated down in the code that wrote
   * it). A corrupt checkpoint, or one no code here can migrate, stops the start: state is never
   * silently reset to init().
   */
  async #restoredState(host: ServiceHost): Promise<StateSnapshot | null> {
    if (!this.#options.stateDir) return null;
    const checkpoint = await readCheckpoint(this.#options.stateDir, host.name);
    if (!checkpoint) return null;
    const { snapshot, header } = checkpoint;
    const restored = await this.#adoptable(host.name, snapshot, host.descriptor, header.release);
    this.#log('info', `${host.name} resumes from its checkpoint of ${header.at} (release ${header.release}, vsn ${header.vsn})`);
    return restored;
  }

  /**
   * Writes a checkpoint of each running service (or of the named ones). `fresh` waits for one
   * already in progress and takes a new one, so it reflects the state from now on (after a swap).
   */
  async checkpoint(services: string[] = [...this.#hosts.keys()], options: { fresh?: boolean } = {}): Promise<void> {
    const stateDir = this.#options.stateDir;
    if (this.#state !== 'running') return;
    await Promise.all(
      services.map(async (name) => {
        const host = this.#hosts.get(name);
        if (!host || host.state !== 'running') return;
        // In reply durability the worker writes its own file, before each reply: a write from
        // here could land after a newer one of the worker's and put the file back in time.
        if (host.source.durability === 'reply') return;
        const running = this.#checkpointing.get(name);
        if (running && !options.fresh) return running;
        if (running) await running;
        if (this.#checkpointing.has(name)) return this.#checkpointing.get(name);
        const worker = host.current;
        const done = worker
          .request('checkpoint', {}, this.#options.controlTimeoutMs)
          .then(async ({ snapshot }) => {
            // Kept in memory for a restart, and on disk for the next start.
            host.lastSnapshot = { snapshot, release: worker.release, at: new Date().toISOString() };
            if (stateDir) await writeCheckpoint(stateDir, name, worker.release, snapshot);
          })
          .then(
            () => undefined,
            (error: unknown) => this.#log('error', `${name}: checkpoint failed: ${errorMessage(error)}`, { code: serializeError(error).code }),
          )
          .finally(() => this.#checkpointing.delete(name));
        this.#checkpointing.set(name, done);
        return done;
      }),
    );
  }

  async #runSwap(target: SwapTarget): Promise<SwapReport> {
    if (this.#state !== 'running') throw theseusError('E_KERNEL_STOPPED');
    if (this.#swapDone) throw theseusError('E_SWAP_IN_PROGRESS');
    const done = this.#swapServices(target);
    this.#swapDone = done;
    try {
      const report = await done;
      this.#release = target.release;
      const switched = report.services.filter((s) => s.outcome === 'switched' && this.#hosts.has(s.service)).map((s) => s.service);
      await this.checkpoint(switched, { fresh: true });
      return report;
    } finally {
      this.#swap = null;
      this.#swapDone = null;
    }
  }

  /**
   * One swap of any mix of services. Stateful services go through the HotSwap machine. Pooled
   * services hand over no state: their new pools are warmed before that machine starts, switched
   * only once it is past its switch, and discarded if it rolls back, so the release moves as one.
   */
  async #swapServices(target: SwapTarget): Promise<SwapReport> {
    const started = performance.now();
    // Called by whichever switches first (the stateful swap, else the pools), and only once.
    let switchedOnce = false;
    const onSwitch = () => {
      if (switchedOnce) return;
      switchedOnce = true;
      try {
        target.onSwitch?.();
      } catch (error) {
        this.#log('error', `swap to ${target.release}: the switch hook failed: ${errorMessage(error)}`);
      }
    };
    const stateful: Record<string, ServiceSource> = {};
    const pooled: Array<{ name: string; pool: PoolHost; source: ServiceSource & { pool: { size: number } } }> = [];
    for (const [name, source] of Object.entries(target.services)) {
      const pool = this.#pools.get(name);
      if (pool && !source.pool) throw this.#swapFailed(target, started, inPhase(theseusError('E_POOLED_KIND_CHANGE', name, 'pooled', 'stateful'), 'check'));
      if (!pool && source.pool && this.#hosts.has(name)) throw this.#swapFailed(target, started, inPhase(theseusError('E_POOLED_KIND_CHANGE', name, 'stateful', 'pooled'), 'check'));
      if (pool) pooled.push({ name, pool, source: source as ServiceSource & { pool: { size: number } } });
      else stateful[name] = source;
    }
    if (pooled.length > 0 && !semver.valid(target.release)) {
      throw this.#swapFailed(target, started, inPhase(theseusError('E_BAD_OPTIONS', 'release version', `'${target.release}' is not a semantic version (like 1.2.3)`), 'check'));
    }

    // 1. Warm a new pool for each changed pooled service, while the old pools serve on.
    const warmStarted = performance.now();
    const warmed: Array<{ pool: PoolHost; generation: PoolGeneration }> = [];
    const unchanged: ServiceSwapReport[] = [];
    const warming = await Promise.allSettled(
      pooled.map(async ({ name, pool, source }) => {
        if (pool.state !== 'running') throw inPhase(theseusError('E_SERVICE_NOT_RUNNING', name, pool.state), 'check');
        const bundle = await this.#bundle(source, name).catch((error: unknown) => Promise.reject(inPhase(error, 'check')));
        if (bundle.sha256 === pool.bundle.sha256 && source.pool.size === pool.size && sameSettings(source, pool.current.source)) {
          unchanged.push(unchangedEntry(name, pool.release, pool.descriptor.vsn));
          return;
        }
        if (pool.release === target.release) {
          throw inPhase(theseusError('E_BAD_OPTIONS', `release ${target.release}`, `${name} is already running release ${pool.release} with different code; bump the release version so the two can be told apart`), 'check');
        }
        if (source.descriptor && source.descriptor.uses.length > 0) throw inPhase(theseusError('E_POOLED_USES', name, source.descriptor.uses.join(', ')), 'check');
        const generation = await pool.warm(target.release, bundle, source).catch((error: unknown) => Promise.reject(inPhase(error, 'prepare')));
        warmed.push({ pool, generation });
        if (generation.descriptor.uses.length > 0) throw inPhase(theseusError('E_POOLED_USES', name, generation.descriptor.uses.join(', ')), 'prepare');
        if (source.descriptor && !sameDescriptor(source.descriptor, generation.descriptor)) {
          throw inPhase(theseusError('E_DESCRIPTOR_MISMATCH', name, target.release, JSON.stringify(generation.descriptor), JSON.stringify(source.descriptor)), 'prepare');
        }
      }),
    );
    const poolEntries = (outcome: ServiceSwapReport['outcome']): ServiceSwapReport[] =>
      warmed.map(({ pool, generation }) => ({
        service: pool.name,
        from: { release: pool.release, vsn: pool.descriptor.vsn },
        to: { release: target.release, vsn: generation.descriptor.vsn },
        change: generation.bundle.sha256 === pool.bundle.sha256 ? 'config' : 'code',
        migration: 'none',
        stateBytes: 0,
        pauseMs: 0,
        drainMs: 0,
        carried: 0,
        outcome,
      }));
    const warmFailure = warming.find((result): result is PromiseRejectedResult => result.status === 'rejected');
    if (warmFailure) {
      // Nothing served from the new pools: ending them is the whole roll-back.
      const entries = poolEntries('rolled-back');
      for (const { name, pool, source } of pooled) {
        if (unchanged.some((entry) => entry.service === name) || entries.some((entry) => entry.service === name)) continue;
        // Its new pool never warmed, so what the new code declares is known only from a manifest.
        entries.push({ ...unchangedEntry(name, pool.release, pool.descriptor.vsn), to: { release: target.release, vsn: source.descriptor?.vsn ?? 'unknown' }, outcome: 'rolled-back' });
      }
      await Promise.all(warmed.map(({ generation }) => generation.discard()));
      throw this.#swapFailed(target, started, warmFailure.reason, [...entries, ...unchanged]);
    }
    const warmMs = performance.now() - warmStarted;

    // 2. The stateful services, through the HotSwap machine, unless none of them changes.
    let statefulReport: SwapReport | null = null;
    let statefulUnchanged: ServiceSwapReport[] = [];
    if (Object.keys(stateful).length > 0) {
      const changed = warmed.length === 0 || (await this.#anyStatefulChange(stateful));
      if (changed) {
        try {
          statefulReport = await this.#runHotSwap({ release: target.release, services: stateful, onSwitch, ...(target.probation ? { probation: true } : {}) });
        } catch (error) {
          // Past its switch the release is decided, even if one service failed as it took over:
          // the pools follow. Before it, the new pools are discarded with the rest.
          const decided = error instanceof SwapError && error.report.outcome === 'failed-after-switch';
          const entries = poolEntries(decided ? 'switched' : 'rolled-back');
          if (decided) await this.#switchPools(warmed, target.release, onSwitch);
          else await Promise.all(warmed.map(({ generation }) => generation.discard()));
          if (error instanceof SwapError) error.report.services.push(...entries, ...unchanged);
          throw error;
        }
      } else {
        statefulUnchanged = Object.keys(stateful).map((name) => {
          const host = this.#hosts.get(name)!;
          return unchangedEntry(name, host.release, host.descriptor.vsn);
        });
      }
    }
    if (!statefulReport && warmed.length === 0) {
      throw this.#swapFailed(target, started, inPhase(theseusError('E_SWAP_NOTHING_TO_DO', target.release), 'check'), [...statefulUnchanged, ...unchanged]);
    }

    // 3. Every new call goes to the new pools; the old ones finish what they have and close.
    const switched = poolEntries('switched');
    await this.#switchPools(warmed, target.release, onSwitch);
    if (!statefulReport) this.#log('info', `swap to ${target.release} committed`, { pools: switched.map((entry) => entry.service) });
    const phaseMs = { ...statefulReport?.phaseMs };
    if (warmed.length > 0) phaseMs.prepare = roundMs((phaseMs.prepare ?? 0) + warmMs);
    return {
      release: target.release,
      outcome: 'committed',
      services: [...(statefulReport?.services ?? statefulUnchanged), ...switched, ...unchanged],
      phaseMs,
      totalMs: roundMs(performance.now() - started),
    };
  }

  #runHotSwap(target: SwapTarget): Promise<SwapReport> {
    const swap = new HotSwap(
      {
        hosts: this.#hosts,
        pooledServices: new Set(this.#pools.keys()),
        drainTimeoutMs: this.#options.drainTimeoutMs,
        controlTimeoutMs: this.#options.controlTimeoutMs,
        bundle: (source, service) => this.#bundle(source, service),
        loadWorker: (service, release, bundle, source) => this.#loadWorker(service, release, bundle, source),
        log: (level, message, data) => this.#log(level, message, data),
        watch: (host, worker) => this.#watch(host, worker),
        restart: (host, reason) => void this.#restart(host, reason),
        lost: (host, reason) => (host.onProbation ? this.#crashedOnProbation(host, reason) : this.#giveUp(host, reason)),
        checkpointSettled: (service) => this.#checkpointing.get(service) ?? Promise.resolve(),
        canWriteState: Boolean(this.#options.stateDir),
      },
      target,
    );
    this.#swap = swap;
    return swap.run();
  }

  /** Whether any of these stateful services would get new code (an unknown one counts: HotSwap refuses it). */
  async #anyStatefulChange(services: Record<string, ServiceSource>): Promise<boolean> {
    for (const [name, source] of Object.entries(services)) {
      const host = this.#hosts.get(name);
      const bundle = host ? await this.#bundle(source, name).catch(() => null) : null;
      if (!host || !bundle || bundle.sha256 !== host.bundle.sha256 || !sameSettings(source, host.source)) return true;
    }
    return false;
  }

  async #switchPools(warmed: ReadonlyArray<{ pool: PoolHost; generation: PoolGeneration }>, release: string, onSwitch: () => void): Promise<void> {
    const retiring = warmed.map(({ pool, generation }) => {
      const fromRelease = pool.release;
      // switchTo routes new calls to the new pool before it returns its promise; the promise
      // waits for the old pool's threads to exit.
      const retired = pool.switchTo(generation);
      pool.lastSwap = { fromRelease, toRelease: release, at: Date.now(), pauseMs: 0, outcome: 'switched' };
      return retired.catch((error: unknown) => this.#log('warn', `${pool.name}@${fromRelease}: the old pool did not close cleanly: ${errorMessage(error)}`));
    });
    onSwitch();
    await Promise.all(retiring);
  }

  /** A swap that failed before anything switched, as a SwapError with its report. */
  #swapFailed(target: SwapTarget, started: number, error: unknown, services: ServiceSwapReport[] = []): SwapError {
    const cause = inPhase(error, 'check');
    const report: SwapReport = {
      release: target.release,
      outcome: cause.phase === 'check' ? 'refused' : 'rolled-back',
      failedPhase: cause.phase!,
      error: { code: cause.code, message: cause.message },
      services,
      phaseMs: {},
      totalMs: roundMs(performance.now() - started),
    };
    this.#log('error', `swap to ${target.release} ${report.outcome} in phase ${cause.phase}: ${cause.message}`, { code: cause.code });
    return new SwapError(cause, report);
  }

  async #bundle(source: ServiceSource, service: string): Promise<Bundle> {
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

  async #loadWorker(service: string, release: string, bundle: Bundle, source: ServiceSource): Promise<ServiceWorker> {
    return ServiceWorker.load({
      service,
      release,
      moduleUrl: bundle.url,
      staticDir: source.staticDir ?? null,
      config: source.config ?? {},
      // In reply durability the worker writes its own state, so it never asks the kernel to.
      checkpointEveryChanges: source.durability === 'reply' ? 0 : this.#options.checkpointEveryChanges,
      durableStateDir: source.durability === 'reply' ? (this.#options.stateDir ?? null) : null,
      // Fresh: a due checkpoint that comes while one is being written must get its own, or the
      // changes since the one under way would wait for the next due or timer.
      onCheckpointDue: () => void this.checkpoint([service], { fresh: true }),
      runtimeFile: (await workerRuntimeBundle(this.#options.cacheDir)).file,
      bootTimeoutMs: this.#options.bootTimeoutMs,
      onLog: (record) => this.#emit(record),
    });
  }

  /**
   * Supervision: a serving worker that dies is restarted with its last state, within limits. On
   * probation (just switched in by an upgrade that is being watched), it is not: a new release
   * that crashes is reverted, and restarting it first would only race the revert.
   */
  #watch(host: ServiceHost, worker: ServiceWorker): void {
    worker.onUnexpectedExit((reason) => {
      if (host.current !== worker || this.#state !== 'running') return;
      if (host.state === 'running') {
        void this.#restart(host, reason);
        return;
      }
      if (host.state !== 'swapping') this.#giveUp(host, `worker exited: ${reason}`);
    });
  }

  #restart(host: ServiceHost, reason: string): Promise<void> {
    if (host.onProbation) {
      this.#crashedOnProbation(host, reason);
      return Promise.resolve();
    }
    return this.#track(this.#restartHost(host, reason, null));
  }

  #track(restart: Promise<void>): Promise<void> {
    const tracked = restart.finally(() => this.#restarting.delete(tracked));
    this.#restarting.add(tracked);
    return tracked;
  }

  // -------------------------------------------------------------------------------------------
  // Probation: between the switch of a watched upgrade and its verdict.

  /**
   * Services whose new worker crashed while on probation. Each one is held (its callers wait, as
   * during a restart) until the upgrade is reverted, or until probation is abandoned.
   */
  probationCrashes(): Array<{ service: string; reason: string }> {
    return [...this.#hosts.values()].filter((host) => host.state === 'crashed').map((host) => ({ service: host.name, reason: host.failure ?? 'crashed' }));
  }

  /** Calls `listener` when a service on probation crashes; returns the function that stops it. */
  onProbationCrash(listener: (service: string, reason: string) => void): () => void {
    this.#probationListeners.add(listener);
    return () => this.#probationListeners.delete(listener);
  }

  /**
   * Ends probation when nothing crashed: returns [] and every service is supervised again. When
   * something crashed, returns the crashes and changes nothing: the caller reverts them. Checking
   * and ending in one synchronous step leaves no moment in which a crash goes unseen.
   */
  endProbation(): Array<{ service: string; reason: string }> {
    const crashes = this.probationCrashes();
    if (crashes.length > 0) return crashes;
    for (const host of this.#hosts.values()) host.onProbation = false;
    return [];
  }

  /**
   * Gives up on a revert: probation ends, and a service still crashed is restarted by supervision
   * in the code it crashed in (within the restart limits), since nothing else can serve it.
   */
  abandonProbation(): void {
    for (const host of this.#hosts.values()) {
      host.onProbation = false;
      if (host.state === 'crashed') void this.#track(this.#restartHost(host, host.failure ?? 'it crashed on probation', null));
    }
  }

  /**
   * Reverts a service that crashed on probation: a worker of `into` (the release it came from)
   * takes over from the crashed one's last state, migrated down in the crashed code when the vsn
   * differs. In reply durability that state holds every change a caller was told of.
   */
  async revertCrashed(service: string, into: { release: string; source: ServiceSource }): Promise<void> {
    const host = this.#host(service);
    if (host.state !== 'crashed') throw theseusError('E_SERVICE_NOT_RUNNING', service, `${host.state} (only a service that crashed on probation can be reverted this way)`);
    const bundle = await this.#bundle(into.source, service);
    await this.#track(this.#restartHost(host, host.failure ?? 'it crashed on probation', { release: into.release, bundle, source: into.source }));
    // The restart changed the state behind TypeScript's back.
    const after = host.state as HostState;
    if (after !== 'running' || host.release !== into.release) throw theseusError('E_SERVICE_NOT_RUNNING', service, host.failure ?? after);
  }

  #crashedOnProbation(host: ServiceHost, reason: string): void {
    host.state = 'crashed';
    host.failure = reason;
    this.#log('warn', `${host.name}@${host.release} crashed on probation (${reason}); its callers wait for the upgrade to be reverted`);
    for (const listener of this.#probationListeners) listener(host.name, reason);
  }

  // -------------------------------------------------------------------------------------------

  /**
   * Starts a new worker for `host` from its last state and gives it new channels to everyone: a
   * restart in the same code (supervision, `into` null), or a revert into another release's code.
   * A state that cannot be brought to the new code's vsn fails it; it is never replaced by init().
   */
  async #restartHost(host: ServiceHost, reason: string, into: { release: string; bundle: Bundle; source: ServiceSource } | null): Promise<void> {
    if (!into) {
      const { maxRestarts, restartWindowMs } = this.#options;
      const now = Date.now();
      host.restartTimes = host.restartTimes.filter((time) => now - time < restartWindowMs);
      host.restartTimes.push(now);
      if (host.restartTimes.length > maxRestarts) {
        this.#giveUp(host, `worker exited (${reason}); it was restarted ${maxRestarts} times within ${restartWindowMs} ms, the limit`);
        return;
      }
      host.restarts++;
      this.#log('warn', `${host.name}@${host.release} worker exited (${reason}); restarting it (${host.restartTimes.length} of ${maxRestarts} within ${restartWindowMs} ms)`);
    } else {
      this.#log('warn', `${host.name}@${host.release} worker exited (${reason}); reverting it to ${into.release}`);
    }
    const wasCrashed = host.state === 'crashed';
    host.state = 'restarting';
    const code = into ?? { release: host.release, bundle: host.bundle, source: host.source };
    let worker: ServiceWorker | null = null;
    const links: InboundLink[] = [];
    const outbound: PortSet['outbound'] = {};
    try {
      worker = await this.#loadWorker(host.name, code.release, code.bundle, code.source);
      if (this.#state !== 'running') {
        await worker.terminate();
        return;
      }
      const last = await this.#lastState(host);
      const snapshot = last && (await this.#adoptable(host.name, last.snapshot, worker.descriptor, last.writtenBy === host.release ? { release: host.release, bundle: host.bundle, source: host.source } : last.writtenBy));
      // Every channel died with the old worker: each caller gets a new one, and so does each
      // service this one calls.
      const inbound = links;
      const afterStart: Array<() => void> = [];
      for (const client of host.clients) {
        const { caller, service } = createLink(worker.descriptor);
        inbound.push(service);
        afterStart.push(() => client.rebind(caller.port, caller.taken));
      }
      for (const other of this.#hosts.values()) {
        if (other === host || other.state !== 'running' || !other.descriptor.uses.includes(host.name)) continue;
        const { caller, service } = createLink(worker.descriptor);
        inbound.push(service);
        afterStart.push(() => void other.current.request('rewire', { service: host.name, link: caller }, this.#options.controlTimeoutMs, [caller.port]).catch(() => undefined));
      }
      for (const dependency of worker.descriptor.uses) {
        const callee = this.#hosts.get(dependency);
        if (!callee) continue;
        const { caller, service } = createLink({ calls: callee.descriptor.calls, casts: callee.descriptor.casts });
        outbound[dependency] = caller;
        afterStart.push(() => callee.attachCaller(service));
      }
      inbound.push(...host.takeHeldCallers());
      const ports: PortSet = { inbound, outbound };
      if (snapshot) {
        // A copy: the kernel keeps its own for the next restart.
        const bytes = snapshot.bytes.slice();
        await worker.request('migrate', { snapshot: { vsn: snapshot.vsn, bytes } }, this.#options.controlTimeoutMs, [bytes.buffer]);
        await worker.request('switch', { ports }, this.#options.controlTimeoutMs);
      } else {
        await worker.request('start', { ports }, this.#options.initTimeoutMs);
      }
      if (this.#state !== 'running') {
        await worker.terminate();
        return;
      }
      const fromRelease = host.release;
      host.current = worker;
      host.state = 'running';
      host.failure = null;
      // What it adopted is now the freshest state the kernel knows, for the next restart.
      if (snapshot) host.lastSnapshot = { snapshot, release: code.release, at: new Date().toISOString() };
      if (into) {
        host.bundle = into.bundle;
        host.source = into.source;
        host.onProbation = false;
        host.lastSwap = { fromRelease, toRelease: into.release, at: Date.now(), pauseMs: 0, outcome: 'reverted after a crash' };
        host.updateMethodTables();
      }
      this.#watch(host, worker);
      for (const step of afterStart) step();
      for (const link of host.takeHeldCallers()) host.attachCaller(link);
      this.#log('info', `${host.name}@${host.release} ${into ? 'reverted' : 'restarted'} from ${last ? last.description : 'init() (no state was saved yet)'}`);
    } catch (error) {
      // Nothing half-made is left behind: the new thread ends and the new channels close.
      await worker?.terminate();
      for (const link of links) link.port.close();
      for (const link of Object.values(outbound)) link.port.close();
      if (into && wasCrashed) {
        // The revert failed; the crashed service waits for the caller's next step.
        host.state = 'crashed';
        host.failure = `${reason}; reverting it to ${into.release} failed: ${errorMessage(error)}`;
        this.#log('error', `${host.name}: ${host.failure}`);
        return;
      }
      this.#giveUp(host, `worker exited (${reason}) and could not be restarted: ${errorMessage(error)}`);
    }
  }

  /**
   * The freshest state of a service whose worker is gone. In reply durability that is the file
   * on disk, which holds every change a caller was told of; otherwise the copy in memory (from
   * the last checkpoint or switch), else the file. Null: none was ever saved.
   */
  async #lastState(host: ServiceHost): Promise<{ snapshot: StateSnapshot; writtenBy: string; description: string } | null> {
    const stateDir = this.#options.stateDir;
    const fromDisk = async () => {
      const checkpoint = stateDir ? await readCheckpoint(stateDir, host.name) : null;
      return checkpoint && { snapshot: checkpoint.snapshot, writtenBy: checkpoint.header.release, description: `its checkpoint of ${checkpoint.header.at}`, at: checkpoint.header.at };
    };
    const inMemory = host.lastSnapshot && { snapshot: host.lastSnapshot.snapshot, writtenBy: host.lastSnapshot.release, description: `its state of ${host.lastSnapshot.at}`, at: host.lastSnapshot.at };
    if (host.source.durability === 'reply') {
      // The file, unless the copy in memory is newer: a worker that took over from one in
      // 'periodic' and died before its first write left the file behind the switch.
      const onDisk = await fromDisk();
      if (onDisk && !(inMemory && inMemory.at > onDisk.at)) return onDisk;
      if (inMemory) return inMemory;
    }
    if (inMemory) return inMemory;
    return fromDisk();
  }

  /**
   * `snapshot` as code that declares `target` can adopt it: as it is when that code has the same
   * vsn or migrates it up; otherwise migrated down in the code of the release that wrote it,
   * which alone knows how (its own code, or an installed release found by resolveRelease).
   */
  async #adoptable(
    service: string,
    snapshot: StateSnapshot,
    target: { vsn: string; migrations: ServiceDescriptor['migrations'] },
    writtenBy: string | { release: string; bundle: Bundle; source: ServiceSource },
  ): Promise<StateSnapshot> {
    if (snapshot.vsn === target.vsn || findMigrationPath(target.migrations, snapshot.vsn, target.vsn, 'up')) return snapshot;
    let code = typeof writtenBy === 'string' ? null : writtenBy;
    if (typeof writtenBy === 'string') {
      const source = (await this.#options.resolveRelease?.(writtenBy))?.[service];
      if (!source) throw theseusError('E_CHECKPOINT_INCOMPATIBLE', service, `it holds vsn '${snapshot.vsn}' from release ${writtenBy}, which is not installed, and the code that must adopt it has vsn '${target.vsn}'`);
      code = { release: writtenBy, bundle: await this.#bundle(source, service), source };
    }
    const converter = await this.#loadWorker(service, code!.release, code!.bundle, { ...code!.source, durability: 'periodic' });
    try {
      // A copy: the caller may keep the original.
      const bytes = snapshot.bytes.slice();
      const { snapshot: converted } = await converter.request('convert', { snapshot: { vsn: snapshot.vsn, bytes }, toVsn: target.vsn }, this.#options.controlTimeoutMs, [bytes.buffer]);
      this.#log('info', `${service}: its state was migrated down from vsn ${snapshot.vsn} to ${target.vsn} in ${code!.release}'s code`);
      return converted;
    } catch (error) {
      throw theseusError('E_CHECKPOINT_INCOMPATIBLE', service, errorMessage(error));
    } finally {
      await converter.terminate();
    }
  }

  /** The service is failed for good: everything waiting on it, and every later call, is told so. */
  #giveUp(host: ServiceHost, reason: string): void {
    host.state = 'failed';
    host.failure = reason;
    for (const client of host.clients) client.fail(reason);
    for (const link of host.takeHeldCallers()) link.port.close();
    for (const other of this.#hosts.values()) {
      if (other === host || other.state !== 'running' || !other.descriptor.uses.includes(host.name)) continue;
      void other.current.request('peer-down', { service: host.name, reason }, this.#options.controlTimeoutMs).catch(() => undefined);
    }
    this.#log('error', `${host.name}@${host.release} is marked failed: ${reason}`);
  }

  #host(service: string): ServiceHost {
    if (this.#state === 'stopped' || this.#state === 'stopping') throw theseusError('E_KERNEL_STOPPED');
    const host = this.#hosts.get(service);
    if (!host) throw theseusError('E_UNKNOWN_SERVICE', service, this.services.join(', '));
    return host;
  }

  /** The pooled service of that name, or null when it is not pooled. */
  #pool(service: string): PoolHost | null {
    if (this.#state === 'stopped' || this.#state === 'stopping') throw theseusError('E_KERNEL_STOPPED');
    return this.#pools.get(service) ?? null;
  }

  async #poolOptions(service: string): Promise<PoolOptions> {
    return {
      service,
      runtimeFile: (await poolRuntimeBundle(this.#options.cacheDir)).file,
      bootTimeoutMs: this.#options.bootTimeoutMs,
      drainTimeoutMs: this.#options.drainTimeoutMs,
      onLog: (record) => this.#emit(record),
      log: (level, message) => this.#log(level, message),
    };
  }

  #log(level: LogRecord['level'], message: string, data?: unknown): void {
    const record: LogRecord = { level, service: 'kernel', release: this.#release, message, time: Date.now() };
    if (data !== undefined) record.data = data;
    this.#emit(record);
  }

  #emit(record: LogRecord): void {
    if (this.#options.onLog) {
      this.#options.onLog(record);
      return;
    }
    const data = record.data === undefined ? '' : ` ${JSON.stringify(record.data)}`;
    process.stderr.write(`${new Date(record.time).toISOString()} ${record.level} [${record.service}@${record.release}] ${record.message}${data}\n`);
  }
}

/** The error as a coded one, tagged with the swap phase it failed in (unless it already says). */
function inPhase(error: unknown, phase: SwapPhase): TheseusError {
  const coded = error instanceof TheseusError ? error : new TheseusError('E_INTERNAL', errorMessage(error), { cause: error });
  coded.phase ??= phase;
  return coded;
}

function unchangedEntry(service: string, release: string, vsn: string): ServiceSwapReport {
  return { service, from: { release, vsn }, to: { release, vsn }, change: 'none', migration: 'none', stateBytes: 0, pauseMs: 0, drainMs: 0, carried: 0, outcome: 'unchanged' };
}

function roundMs(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
