// The kernel: hosts each service in its own worker thread (or on a pool of threads), hands out
// typed clients, and moves services to new code. Runs in the kernel's main thread.
//
// This is the public facade. It validates, then delegates to parts with one concern each:
//   boot.ts           starting a release's services, wired and restored
//   supervisor.ts     restarting a crashed worker, holding one that crashes on probation
//   checkpointer.ts   checkpoints, and the state a service resumes from
//   wiring.ts         the channel for every "A uses B"
//   worker-factory.ts a service's code made a worker (or a pool's options)
//   upgrade/          a swap of services to new code (service-swap.ts, hot-swap.ts)
//
//   starting --> running --> stopping --> stopped      (starting --> stopping when the boot fails)

import { errorMessage, theseusError } from '../common/errors.ts';
import { checkTransition, type TransitionTable } from '../common/lifecycle.ts';
import { BATCH_WS, type ArgumentSchema, type BatchedCall, type BatchedResult, type BatchEncoding, type LogRecord, type ServiceSource, type StateSnapshot } from '../common/protocol.ts';
import type { CallMetricsSnapshot } from '../common/call-metrics.ts';
import type { KeptState, ServiceStatus } from '../common/status.ts';
import { defaultCacheDir } from '../release/bundler.ts';
import { bootRelease } from './boot.ts';
import { Checkpointer } from './checkpointer.ts';
import type { KernelContext, KernelOptions, ResolvedKernelOptions, SwapPath } from './kernel-context.ts';
import { PoolHost } from './pool-host.ts';
import type { ServiceHost } from './service-host.ts';
import type { SpareStats } from './spare-workers.ts';
import { Supervisor } from './supervisor.ts';
import type { SwapReport, SwapTarget } from './upgrade/report.ts';
import { swapServices, type SwapKernel } from './upgrade/service-swap.ts';
import { WorkerFactory } from './worker-factory.ts';

export type { KernelOptions } from './kernel-context.ts';

type KernelState = 'starting' | 'running' | 'stopping' | 'stopped';

const allowedTransitions: TransitionTable<KernelState> = {
  starting: ['running', 'stopping'],
  running: ['stopping'],
  stopping: ['stopped'],
  stopped: [],
};

export class Kernel {
  #state: KernelState = 'starting';
  #hosts = new Map<string, ServiceHost>();
  /** Pooled (stateless) services, each on a piscina pool; never in #hosts. */
  #pools = new Map<string, PoolHost>();
  #options: ResolvedKernelOptions;
  #context: KernelContext;
  #checkpoints: Checkpointer;
  #supervisor: Supervisor;
  #workers: WorkerFactory;
  /** The swap under way, and its machine's state (for tests that wait for a phase). */
  #swapDone: Promise<SwapReport> | null = null;
  #swapMachine: { readonly state: string } | null = null;
  /**
   * Services a release removed, with their last state (also on disk when there is a stateDir): a
   * later release that brings one back resumes from it, and calls to it meanwhile say it was removed.
   */
  #removed = new Map<string, { release: string; by: string; snapshot: StateSnapshot | null }>();
  /** The newest release a swap switched to (or the first one); labels the kernel's own log lines. */
  #release: string;
  readonly startedAt = Date.now();
  /** Told when a crashed worker's successor serves (onRestart). */
  #restartListeners = new Set<(service: string) => void>();
  /** Told when supervision gives up on a service (onGiveUp). */
  #giveUpListeners = new Set<(service: string) => void>();

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
      spareWorkers: 1,
      swapPath: 'direct',
      ...options,
    };
    this.#release = options.release;
    this.#context = {
      hosts: this.#hosts,
      pools: this.#pools,
      options: this.#options,
      running: () => this.#state === 'running',
      log: (level, message, data) => this.#log(level, message, data),
      bundle: (source, service) => this.#workers.bundle(source, service),
      loadWorker: (service, release, bundle, source, spare) => this.#workers.loadWorker(service, release, bundle, source, spare),
      restarted: (service) => {
        for (const listener of this.#restartListeners) listener(service);
      },
      gaveUp: (service) => {
        for (const listener of this.#giveUpListeners) listener(service);
      },
    };
    this.#workers = new WorkerFactory(this.#options, {
      emit: (record) => this.#emit(record),
      log: (level, message) => this.#log(level, message),
      // Fresh: a due checkpoint that comes while one is being written must get its own, or the
      // changes since the one under way would wait for the next due or timer.
      checkpointDue: (service) => void this.#checkpoints.checkpoint([service], { fresh: true }),
      openClient: (service) => this.#host(service).newClient(),
      casts: () => Object.fromEntries([...this.#hosts.values()].map((host) => [host.name, [...host.descriptor.casts]])),
    });
    this.#checkpoints = new Checkpointer(this.#context);
    this.#supervisor = new Supervisor(this.#context, this.#checkpoints);
  }

  /** Bundles and boots every service, wires the ports between them, and runs their init. */
  static async start(options: KernelOptions): Promise<Kernel> {
    checkCountOptions(options);
    const kernel = new Kernel(options);
    try {
      await bootRelease({
        context: kernel.#context,
        hosts: kernel.#hosts,
        pools: kernel.#pools,
        supervisor: kernel.#supervisor,
        checkpoints: kernel.#checkpoints,
        poolOptions: (service) => kernel.#workers.poolOptions(service),
      });
    } catch (error) {
      await kernel.stop().catch(() => undefined);
      throw error;
    }
    kernel.#transition('running');
    kernel.#checkpoints.startTimer();
    // After the boot, which they would only slow down.
    await kernel.#workers.spares.start();
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
  callBatch(service: string, calls: BatchedCall[], encoding: BatchEncoding = ''): Promise<BatchedResult[]> {
    const pool = this.#pool(service);
    if (pool) {
      // A pool keeps no state between calls, so no connection could be remembered by it.
      if (encoding === BATCH_WS) return Promise.reject(theseusError('E_WS_POOLED', service));
      return pool.callBatch(calls, encoding);
    }
    return this.#host(service).defaultClient().callBatch(calls, encoding);
  }

  /**
   * Calls `listener` with the service's name each time a crashed worker's successor serves (the
   * WebSocket front door tells the service which connections are open); returns the function
   * that stops it.
   */
  onRestart(listener: (service: string) => void): () => void {
    this.#restartListeners.add(listener);
    return () => this.#restartListeners.delete(listener);
  }

  /** Calls `listener` when supervision gives up on a service (past its restart limit); returns the unsubscribe. */
  onGiveUp(listener: (service: string) => void): () => void {
    this.#giveUpListeners.add(listener);
    return () => this.#giveUpListeners.delete(listener);
  }

  /** Whether a service runs on a pool (its calls run concurrently, in no particular order). */
  isPooled(service: string): boolean {
    return this.#pools.has(service);
  }

  /** Moves the named services to the target release's code; rejects with a SwapError on failure. */
  upgrade(target: SwapTarget): Promise<SwapReport> {
    return this.#runSwap(target);
  }

  /** The same machine as upgrade, running the other way: down migrations run in the newer code. */
  downgrade(target: SwapTarget): Promise<SwapReport> {
    return this.#runSwap(target);
  }

  /** The state of the swap under way ('idle' when none; 'pools' while only pools are switched). */
  get swapState(): string {
    return this.#swapMachine?.state ?? (this.#swapDone ? 'pools' : 'idle');
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

  /** The warm spares: how many wait, and how many were handed out or died waiting. */
  get spareWorkers(): SpareStats {
    return this.#workers.spares.stats();
  }

  /** Resolves once every wanted spare has booted (for a bench or a test that needs one ready). */
  sparesReady(): Promise<void> {
    return this.#workers.spares.whenFull();
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
    const pools = [...this.#pools.values()].map((pool) => pool.status());
    const stateful = await Promise.all(
      [...this.#hosts.values()].map(async (host): Promise<ServiceStatus> => {
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

  /**
   * Each stateful service's call counters, as its current worker keeps them (kernel/common/call-metrics.ts):
   * a retired or crashed worker's are gone with it, so a reader keeps the last copy it saw.
   */
  async callMetrics(): Promise<Array<{ service: string; release: string; threadId: number; snapshot: CallMetricsSnapshot | null }>> {
    return Promise.all(
      [...this.#hosts.values()].map(async (host) => ({
        service: host.name,
        release: host.release,
        threadId: host.current.threadId,
        snapshot: await host.current.request('metrics', {}, this.#options.controlTimeoutMs).catch(() => null),
      })),
    );
  }

  /** The kept state of each service a release removed (on disk with a stateDir, else in memory). */
  async keptStates(): Promise<KeptState[]> {
    if (this.#options.stateDir) return this.#checkpoints.keptStates(this.services);
    return [...this.#removed]
      .filter(([, kept]) => kept.snapshot !== null)
      .map(([service, kept]) => ({ service, release: kept.release, vsn: kept.snapshot!.vsn, at: '?', bytes: kept.snapshot!.bytes.byteLength }));
  }

  /** The calls and casts the running code of a service declares, and the arguments of those that declare them. */
  methods(service: string): { calls: readonly string[]; casts: readonly string[]; args: Readonly<Record<string, readonly ArgumentSchema[]>> } {
    const { calls, casts, args = {} } = (this.#pool(service) ?? this.#host(service)).descriptor;
    return { calls, casts, args };
  }

  /**
   * Checks arguments as a call or cast of `method` would be checked, without running anything:
   * rejects with E_ARGS_INVALID when they do not match. A cast answers nothing, so a caller that
   * must be told (the control socket's `call`) checks first; the cast is checked again when it runs.
   */
  async checkArgs(service: string, method: string, args: unknown[]): Promise<void> {
    const pool = this.#pool(service);
    const host = pool ?? this.#host(service);
    // Only a method that declares its arguments has anything to check: no round trip for the rest.
    if (!host.descriptor.args || !Object.hasOwn(host.descriptor.args, method)) return;
    if (pool) return pool.checkArgs(method, args);
    await this.#host(service).current.request('check-args', { method, args }, this.#options.controlTimeoutMs);
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

  /** Writes a checkpoint of each running service (or of the named ones); see Checkpointer. */
  checkpoint(services?: string[], options: { fresh?: boolean } = {}): Promise<void> {
    return this.#checkpoints.checkpoint(services, options);
  }

  // Probation (see Supervisor): the release-level upgrade watches, ends or reverts it.

  probationCrashes(): Array<{ service: string; reason: string }> {
    return this.#supervisor.probationCrashes();
  }

  onProbationCrash(listener: (service: string, reason: string) => void): () => void {
    return this.#supervisor.onProbationCrash(listener);
  }

  endProbation(): Array<{ service: string; reason: string }> {
    return this.#supervisor.endProbation();
  }

  abandonProbation(): void {
    this.#supervisor.abandonProbation();
  }

  /** Reverts a service that crashed on probation into `into`'s code, from its last state. */
  async revertCrashed(service: string, into: { release: string; source: ServiceSource }): Promise<void> {
    const host = this.#host(service);
    await this.#supervisor.revertCrashed(host, { ...into, bundle: await this.#workers.bundle(into.source, service) });
  }

  /** Drains every service, runs terminate(), ends the workers and rejects later calls. */
  async stop(): Promise<void> {
    if (this.#state === 'stopped' || this.#state === 'stopping') return;
    this.#transition('stopping');
    const sparesStopped = this.#workers.spares.stop();
    // A swap in flight owns ports and workers; let it finish (or roll back) before ending them.
    await this.#swapDone?.catch(() => undefined);
    await this.#checkpoints.stop();
    await this.#supervisor.settled();
    const poolsStopped = Promise.all([...this.#pools.values()].map((pool) => pool.stop()));
    await Promise.all([...this.#hosts.values()].map((host) => this.#stopHost(host)));
    await poolsStopped;
    await sparesStopped;
    this.#transition('stopped');
  }

  // -------------------------------------------------------------------------------------------

  #transition(next: KernelState): void {
    this.#state = checkTransition(allowedTransitions, 'the kernel', this.#state, next);
  }

  async #stopHost(host: ServiceHost): Promise<void> {
    const worker = host.current;
    const wasServing = host.state === 'running';
    // Not serving (failed, crashed, or never started): there is nothing to drain, only a thread to end.
    host.transition('stopping');
    worker.expectExit();
    if (wasServing) {
      const { drainTimeoutMs, controlTimeoutMs, stateDir } = this.#options;
      const stopped = await worker
        .request('stop', { runTerminate: true, reason: 'kernel stop', drainTimeoutMs, snapshot: Boolean(stateDir) }, drainTimeoutMs + controlTimeoutMs)
        .catch((error: unknown) => {
          this.#log('warn', `${host.name} did not stop cleanly: ${errorMessage(error)}`);
          return {} as { snapshot?: StateSnapshot; persisted?: boolean };
        });
      await this.#checkpoints.writeFinal(host, stopped);
    }
    host.closeClients('the kernel stopped');
    await worker.terminate();
    host.transition('stopped');
  }

  async #runSwap(target: SwapTarget): Promise<SwapReport> {
    if (this.#state !== 'running') throw theseusError('E_KERNEL_STOPPED');
    if (this.#swapDone) throw theseusError('E_SWAP_IN_PROGRESS');
    // No spare boots while the swap runs: it would compete for the cores with the pause.
    this.#workers.spares.hold();
    const done = swapServices(this.#swapKernel(target.swapPath ?? this.#options.swapPath), target);
    this.#swapDone = done;
    try {
      const report = await done;
      this.#release = target.release;
      return report;
    } finally {
      this.#swapMachine = null;
      this.#swapDone = null;
      // Switched or rolled back, the old workers are retired: the spares taken are replaced now.
      this.#workers.spares.release();
    }
  }

  /** What a swap may use of the kernel: its services, and its parts' handles on them. */
  #swapKernel(swapPath: SwapPath): SwapKernel {
    const supervisor = this.#supervisor;
    return {
      hosts: this.#hosts,
      pools: this.#pools,
      pooledServices: new Set(this.#pools.keys()),
      drainTimeoutMs: this.#options.drainTimeoutMs,
      controlTimeoutMs: this.#options.controlTimeoutMs,
      precopy: { maxRounds: this.#options.precopy?.maxRounds ?? 8, stopAtKeys: this.#options.precopy?.stopAtKeys ?? 512 },
      canWriteState: Boolean(this.#options.stateDir),
      bundle: this.#context.bundle,
      swapPath,
      loadWorker: (service, release, bundle, source) => this.#workers.loadWorker(service, release, bundle, source, swapPath === 'direct'),
      log: (level, message, data) => this.#log(level, message, data),
      watch: (host, worker) => supervisor.watch(host, worker),
      restart: (host, reason) => void supervisor.restart(host, reason),
      lost: (host, reason) => supervisor.lost(host, reason),
      checkpointSettled: (service) => this.#checkpoints.settled(service),
      checkpoint: (services) => this.#checkpoints.checkpoint(services, { fresh: true }),
      started: (machine) => (this.#swapMachine = machine),
      initTimeoutMs: this.#options.initTimeoutMs,
      keptState: async (host) => {
        const onDisk = await this.#checkpoints.resumable(host);
        if (onDisk) return onDisk;
        const inMemory = this.#removed.get(host.name);
        if (!inMemory?.snapshot) return null;
        const snapshot = await this.#checkpoints.adoptable(host.name, inMemory.snapshot, host.descriptor, inMemory.release);
        return { snapshot, release: inMemory.release };
      },
      startPool: async (service, release, bundle, source) => PoolHost.start(await this.#workers.poolOptions(service), release, bundle, source),
      joinPool: (pool) => {
        this.#pools.set(pool.name, pool);
        this.#removed.delete(pool.name);
      },
      leavePool: (pool, release) => {
        this.#pools.delete(pool.name);
        // A pool keeps no state: nothing to resume from, only calls to refuse with the right code.
        this.#removed.set(pool.name, { release: pool.release, by: release, snapshot: null });
      },
      join: (host) => {
        this.#hosts.set(host.name, host);
        this.#removed.delete(host.name);
      },
      leave: (host, release) => {
        this.#hosts.delete(host.name);
        this.#removed.set(host.name, { release: host.release, by: release, snapshot: host.lastSnapshot?.snapshot ?? null });
        host.refuseNewCalls(`release ${release} removed it`);
      },
      keepSwitched: (host, snapshot, release, at) =>
        snapshot ? this.#checkpoints.keepSwitched(host, snapshot, release, at) : this.#checkpoints.checkpoint([host.name], { fresh: true }),
      keep: async (host, stopped) => {
        if (stopped.snapshot) this.#removed.set(host.name, { ...this.#removed.get(host.name)!, snapshot: stopped.snapshot });
        await this.#checkpoints.writeFinal(host, stopped);
      },
    };
  }

  #host(service: string): ServiceHost {
    if (this.#state === 'stopped' || this.#state === 'stopping') throw theseusError('E_KERNEL_STOPPED');
    const host = this.#hosts.get(service);
    const removed = this.#removed.get(service);
    if (!host && removed) throw theseusError('E_SERVICE_REMOVED', service, `release ${removed.by} removed it`);
    if (!host) throw theseusError('E_UNKNOWN_SERVICE', service, this.services.join(', '));
    return host;
  }

  /** The pooled service of that name, or null when it is not pooled. */
  #pool(service: string): PoolHost | null {
    if (this.#state === 'stopped' || this.#state === 'stopping') throw theseusError('E_KERNEL_STOPPED');
    return this.#pools.get(service) ?? null;
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

/** theseus.config.ts checks these with its schema; a Kernel started from code gets the same rules. */
function checkCountOptions(options: KernelOptions): void {
  const check = (name: string, value: number | undefined, max: number) => {
    if (value !== undefined && !(Number.isSafeInteger(value) && value >= 0 && value <= max)) {
      throw theseusError('E_BAD_OPTIONS', name, `${JSON.stringify(value)} is not a whole number from 0 to ${max}`);
    }
  };
  check('precopy.maxRounds', options.precopy?.maxRounds, Number.MAX_SAFE_INTEGER);
  check('precopy.stopAtKeys', options.precopy?.stopAtKeys, Number.MAX_SAFE_INTEGER);
  check('spareWorkers', options.spareWorkers, 16);
}
