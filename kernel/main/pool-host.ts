// The kernel's record of one pooled (stateless) service: a piscina pool of `size` threads running
// its code, and the main thread's typed client of it. Runs in the kernel's main thread.
//
// A hot swap of a pooled service needs no state hand-over. The new code gets a pool of its own,
// warmed first (every thread has loaded the module), while the old pool keeps serving. Then one
// synchronous assignment routes every new call to it, and the old pool retires: it finishes the
// tasks it already has, then closes, and its threads exit. No call is refused or lost on the way.
//
// One pool generation:
//
//   warming --(every thread loaded)--> warm --(switchTo)--> serving --(replaced, stop)--> retiring --> closed
//      |                                 |
//      +--(load fails, timeout)--> closed +--(the stateful swap rolled back)--> closed
//
// The host:  starting -> running -> stopping -> stopped

import { Piscina } from 'piscina';
import { TheseusError, deserializeError, errorMessage, serializeError, theseusError } from '../common/errors.ts';
import { methodProxy, type ServiceClient } from '../common/client.ts';
import { explainCloneFailure } from '../common/plain-data.ts';
import { decodeHttpRequest, encodeHttpReply, type WireHttpRequest } from '../common/http-codec.ts';
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import {
  BATCH_HTTP,
  FRAME_BATCH,
  FRAME_CALL,
  FRAME_CAST,
  PROTOCOL_VERSION,
  REPLY_ERROR,
  REPLY_OK,
  type BatchedCall,
  type BatchedResult,
  type GatewayFrame,
  type InboundLink,
  type LogRecord,
  type ReplyFrame,
  type RequestFrame,
  type PoolBootData,
  type PoolTask,
  type PoolTaskResult,
  type PoolWarmReply,
  type ServiceDescriptor,
  type ServiceSource,
} from '../common/protocol.ts';
import type { Bundle } from '../release/bundler.ts';
import type { HostState, LastSwap, ServiceStatus } from '../common/status.ts';
import { checkTransition, type TransitionTable } from '../common/lifecycle.ts';

export type PoolGenerationState = 'warming' | 'warm' | 'serving' | 'retiring' | 'closed';

const allowedTransitions: TransitionTable<PoolGenerationState> = {
  warming: ['warm', 'closed'],
  warm: ['serving', 'closed'],
  serving: ['retiring'],
  retiring: ['closed'],
  closed: [],
};

export interface PoolOptions {
  service: string;
  /** The piscina worker's task module: the bundled kernel/worker/pool-entry.ts. */
  runtimeFile: string;
  /** How long warming may take, for all threads together. */
  bootTimeoutMs: number;
  /** How long a retiring pool's tasks may take to finish before its threads are ended anyway. */
  drainTimeoutMs: number;
  onLog(record: LogRecord): void;
  log(level: LogRecord['level'], message: string): void;
  /**
   * A main-thread client of the stateful service a pool thread calls (each thread gets its own,
   * so its calls keep their order), and the casts of each stateful service, for the threads' clients.
   */
  openClient(service: string): ServiceClient;
  casts(): Record<string, string[]>;
}

/** One release of a pooled service on its own pool of threads. */
export class PoolGeneration {
  readonly release: string;
  readonly bundle: Bundle;
  readonly source: ServiceSource;
  readonly size: number;
  descriptor!: ServiceDescriptor;
  /** The ids of the pool's threads, as each reported while warming. */
  threadIds: number[] = [];
  #state: PoolGenerationState = 'warming';
  #pool: Piscina<PoolTask, PoolTaskResult>;
  #options: PoolOptions;
  /** Tasks given to the pool and not yet answered (running or queued). */
  #pending = 0;
  #onIdle: (() => void) | null = null;
  /** Each thread's channel for calls to stateful services, with the main thread's clients behind it. */
  #gateways: Array<{ port: MessagePort; clients: Map<string, ServiceClient> }> = [];

  private constructor(options: PoolOptions, release: string, bundle: Bundle, source: ServiceSource, size: number) {
    this.#options = options;
    this.release = release;
    this.bundle = bundle;
    this.source = source;
    this.size = size;
    const boot: PoolBootData = {
      protocol: PROTOCOL_VERSION,
      service: options.service,
      release,
      moduleUrl: bundle.url,
      staticDir: source.staticDir ?? null,
      config: source.config ?? {},
    };
    this.#pool = new Piscina<PoolTask, PoolTaskResult>({
      filename: options.runtimeFile,
      // A fixed size: every thread is started now and warmed, never started on demand mid-load.
      minThreads: size,
      maxThreads: size,
      concurrentTasksPerWorker: 1,
      workerData: boot,
      // As for service workers: none of the kernel's own Node flags (a tsx loader would slow every
      // thread's boot, and some flags make new Worker() throw).
      execArgv: [],
      closeTimeout: options.drainTimeoutMs,
    });
    // A thread that dies with no task on it is reported here; without a listener piscina's
    // 'error' event would throw in the kernel's main thread.
    this.#pool.on('error', (error: unknown) => options.log('warn', `${options.service}@${release}: a pool thread failed: ${errorMessage(error)}`));
  }

  /**
   * Starts a pool of `size` threads and resolves once every thread has loaded the module (each
   * answered a `warm` task). A module that fails to load, or a thread that does not answer within
   * the boot timeout, ends the whole pool and rejects: nothing of it is left running.
   */
  static async warm(options: PoolOptions, release: string, bundle: Bundle, source: ServiceSource): Promise<PoolGeneration> {
    const size = source.pool?.size ?? 1;
    const generation = new PoolGeneration(options, release, bundle, source, size);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(theseusError('E_POOL_WARMUP_TIMEOUT', options.service, release, generation.threadIds.length, size, options.bootTimeoutMs)),
        options.bootTimeoutMs,
      );
    });
    try {
      await Promise.race([generation.#warmEveryThread(), timedOut]);
      generation.#transition('warm');
      return generation;
    } catch (error) {
      await generation.discard();
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  get state(): PoolGenerationState {
    return this.#state;
  }

  /** Tasks running now, and tasks waiting for a free thread. */
  get load(): { inFlight: number; queued: number } {
    const queued = this.#pool.queueSize;
    return { inFlight: this.#pending - queued, queued };
  }

  /** Runs one task. Never rejects: a thread that died under the task answers E_SERVICE_DOWN. */
  run(task: PoolTask, transferList?: MessagePort[]): Promise<PoolTaskResult> {
    this.#pending++;
    return this.#pool.run(task, transferList ? { transferList } : {}).then(
      (result) => {
        this.#settled();
        return result;
      },
      (error: unknown) => {
        this.#settled();
        // It may or may not have run, as with a stateful worker that dies mid-call: not sent again.
        const reason = `its pool thread ended while handling this call (${errorMessage(error)})`;
        return { ok: false, error: serializeError(theseusError('E_SERVICE_DOWN', this.#options.service, reason)) };
      },
    );
  }

  /** From warm to serving: the host routes new calls here from now on. */
  serve(): void {
    this.#transition('serving');
  }

  /**
   * Lets the tasks already given to this pool finish (within the drain timeout), then closes it;
   * resolves once its threads have exited. Tasks still running past the timeout are ended with
   * their threads, as a stateful worker blocked past its drain timeout is.
   */
  async retire(): Promise<void> {
    this.#transition('retiring');
    const drained = await this.#waitIdle(this.#options.drainTimeoutMs);
    if (!drained) {
      this.#options.log('warn', `${this.#options.service}@${this.release}: ${this.#pending} pooled calls were still running after the drain timeout of ${this.#options.drainTimeoutMs} ms; their threads are ended`);
    }
    await (drained ? this.#pool.close() : this.#pool.destroy());
    this.#closeGateways();
    this.#transition('closed');
  }

  /** Ends a pool that never served (warming failed, or the swap it was made for rolled back). */
  async discard(): Promise<void> {
    if (this.#state === 'closed') return;
    await this.#pool.destroy();
    this.#closeGateways();
    this.#transition('closed');
  }

  async #warmEveryThread(): Promise<void> {
    // One warm task per thread at once: piscina gives each to a different idle thread. A thread
    // answers only after its module has loaded, so all answered means all are ready; any
    // thread missed (it was busy) is asked again.
    const seen = new Set<number>();
    while (seen.size < this.size) {
      const answers = await Promise.all(
        Array.from({ length: this.size - seen.size }, () => {
          const gateway = this.#openGateway();
          return this.run({ op: 'warm', gateway, casts: this.#options.casts() }, [gateway]);
        }),
      );
      for (const answer of answers) {
        if (!answer.ok) {
          // The same code a stateful worker's failed boot gives, with the module's own error as cause.
          const cause = deserializeError(answer.error);
          const error = theseusError('E_BOOT_FAILED', this.#options.service, this.release, cause.message);
          error.cause = cause;
          throw error;
        }
        const reply = answer.reply as PoolWarmReply;
        this.descriptor = reply.descriptor;
        seen.add(reply.threadId);
      }
      if (this.#state !== 'warming') return;
    }
    this.threadIds = [...seen];
  }

  /**
   * A channel for one thread's calls to stateful services: the thread gets the returned end; the
   * main thread makes each call with a client of its own per service, and answers on the channel.
   */
  #openGateway(): MessagePort {
    const { port1, port2 } = new MessageChannel();
    const clients = new Map<string, ServiceClient>();
    const answer = (frame: ReplyFrame) => port1.postMessage(frame);
    port1.on('message', ([service, [kind, id, method, args = []]]: GatewayFrame) => {
      let client: ServiceClient;
      try {
        client = clients.get(service) ?? this.#options.openClient(service);
        clients.set(service, client);
      } catch (error) {
        if (kind === FRAME_CALL) answer([id, REPLY_ERROR, serializeError(error)]);
        else this.#options.log('error', `${this.#options.service}: a cast to ${service}.${method}() was not sent: ${errorMessage(error)}`);
        return;
      }
      if (kind === FRAME_CAST || client.methods.casts.includes(method)) {
        try {
          client.cast(method, args);
          if (kind === FRAME_CALL) answer([id, REPLY_OK, undefined]);
        } catch (error) {
          if (kind === FRAME_CALL) answer([id, REPLY_ERROR, serializeError(error)]);
        }
        return;
      }
      client.call(method, args).then(
        (value) => answer([id, REPLY_OK, value]),
        (error: unknown) => answer([id, REPLY_ERROR, serializeError(error, 'E_HANDLER_FAILED')]),
      );
    });
    this.#gateways.push({ port: port1, clients });
    return port2;
  }

  /** Once no task runs: the threads' channels and their clients go. */
  #closeGateways(): void {
    for (const { port, clients } of this.#gateways) {
      port.close();
      for (const client of clients.values()) client.close(`the pool of ${this.#options.service}@${this.release} closed`);
    }
    this.#gateways = [];
  }

  #settled(): void {
    this.#pending--;
    if (this.#pending === 0) this.#onIdle?.();
  }

  #waitIdle(timeoutMs: number): Promise<boolean> {
    if (this.#pending === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => finish(false), timeoutMs);
      const finish = (drained: boolean) => {
        clearTimeout(timer);
        this.#onIdle = null;
        resolve(drained);
      };
      this.#onIdle = () => finish(true);
    });
  }

  #transition(next: PoolGenerationState): void {
    this.#state = checkTransition(allowedTransitions, `the pool of ${this.#options.service}@${this.release}`, this.#state, next);
  }
}

/** A pooled service as the kernel holds it: the serving generation, and the ones retiring. */
export class PoolHost {
  readonly name: string;
  state: HostState = 'starting';
  current: PoolGeneration;
  readonly startedAt = Date.now();
  failure: string | null = null;
  lastSwap: LastSwap | null = null;
  /** Answered calls and casts, over every generation. */
  callsServed = 0;
  castsServed = 0;
  #options: PoolOptions;
  #retiring = new Set<PoolGeneration>();
  #casts: ReadonlySet<string>;
  #proxy: object | null = null;
  /** Channels of stateful services that use this pool: closed when it stops. */
  #callers = new Set<MessagePort>();

  private constructor(options: PoolOptions, first: PoolGeneration) {
    this.name = options.service;
    this.#options = options;
    this.current = first;
    this.#casts = new Set(first.descriptor.casts);
  }

  /** Warms the first pool and serves it. */
  static async start(options: PoolOptions, release: string, bundle: Bundle, source: ServiceSource): Promise<PoolHost> {
    const first = await PoolGeneration.warm(options, release, bundle, source);
    first.serve();
    const host = new PoolHost(options, first);
    host.state = 'running';
    return host;
  }

  get descriptor(): ServiceDescriptor {
    return this.current.descriptor;
  }

  get release(): string {
    return this.current.release;
  }

  get bundle(): Bundle {
    return this.current.bundle;
  }

  get size(): number {
    return this.current.size;
  }

  /** A new generation of this service on a pool of its own, warmed but not serving. */
  warm(release: string, bundle: Bundle, source: ServiceSource): Promise<PoolGeneration> {
    return PoolGeneration.warm(this.#options, release, bundle, source);
  }

  /**
   * Routes every call from now on to `next` (in this synchronous turn), then retires the old pool:
   * resolves once its tasks have finished and its threads have exited.
   */
  async switchTo(next: PoolGeneration): Promise<void> {
    const old = this.current;
    next.serve();
    this.current = next;
    this.#casts = new Set(next.descriptor.casts);
    this.#retiring.add(old);
    try {
      await old.retire();
    } finally {
      this.#retiring.delete(old);
    }
  }

  /** `fromHttp`: the one argument is a request the front door built (a refusal then speaks of the request). */
  call(method: string, args: unknown[], fromHttp = false): Promise<unknown> {
    const refused = this.#refusal(method, args);
    if (refused) return Promise.reject(refused);
    const task: PoolTask = args.length === 0 ? { op: 'call', method } : { op: 'call', method, args };
    if (fromHttp) task.http = true;
    return this.current.run(task).then((result) => {
      this.#emitLogs(result);
      if (!result.ok) throw deserializeError(result.error);
      this.callsServed++;
      return result.reply;
    });
  }

  cast(method: string, args: unknown[]): void {
    const refused = this.#refusal(method, args);
    if (refused) throw refused;
    const task: PoolTask = args.length === 0 ? { op: 'cast', method } : { op: 'cast', method, args };
    void this.current.run(task).then((result) => {
      this.#emitLogs(result);
      if (result.ok) this.castsServed++;
      else this.#options.log('error', `${this.name}: cast ${method}() failed: ${result.error.message}`);
    });
  }

  /** The `check-args` control op, run on one of the pool's threads (Kernel.checkArgs). */
  async checkArgs(method: string, args: unknown[]): Promise<void> {
    const result = await this.current.run({ op: 'check-args', method, args });
    if (!result.ok) throw deserializeError(result.error);
  }

  /**
   * Calls given together (the HTTP front door's batches), run as separate tasks: a pool's threads
   * share no state to keep in order. With `encoding` BATCH_HTTP each is a handler and a
   * WireHttpRequest, decoded here, and each reply is encoded here, on the main thread.
   */
  callBatch(calls: BatchedCall[], encoding: '' | typeof BATCH_HTTP): Promise<BatchedResult[]> {
    return Promise.all(
      calls.map(([method, args]) =>
        Promise.resolve()
          .then(() => (encoding === BATCH_HTTP ? this.call(method, [decodeHttpRequest(args as unknown as WireHttpRequest)], true) : this.call(method, args ?? [])))
          .then(
            (value): BatchedResult => {
              if (encoding !== BATCH_HTTP) return [REPLY_OK, value];
              const encoded = encodeHttpReply(value);
              if ('problem' in encoded) return [REPLY_ERROR, serializeError(theseusError('E_HTTP_BAD_REPLY', `${this.name}.${method}()`, encoded.problem))];
              return [REPLY_OK, encoded];
            },
            (error: unknown): BatchedResult => [REPLY_ERROR, serializeError(error, 'E_HANDLER_FAILED')],
          ),
      ),
    );
  }

  /**
   * Serves the service end of a stateful service's channel to this pool (it `uses` the pool): each
   * call runs as a task on whichever generation serves at that moment, so a swap of the pool needs
   * nothing from its callers, and its answer goes back on the channel, as a worker's would. A
   * batch runs as separate tasks. The channel moves with its caller's worker on the caller's swaps.
   */
  serveCaller(link: InboundLink): void {
    const { port, taken } = link;
    this.#callers.add(port);
    port.on('message', (frame: RequestFrame) => {
      const [kind, id, method, args = []] = frame;
      if (kind === FRAME_CAST) {
        try {
          this.cast(method, args);
        } catch (error) {
          this.#options.log('error', `${this.name}: cast ${method}() from a service failed: ${errorMessage(error)}`);
        }
        return;
      }
      // Started at once: a restart of the caller must not send it again.
      Atomics.store(taken, 0, id);
      const answer: Promise<unknown> = kind === FRAME_BATCH ? this.callBatch(args as unknown as BatchedCall[], '') : this.call(method, args);
      answer.then(
        (value) => port.postMessage([id, REPLY_OK, value] satisfies ReplyFrame),
        (error: unknown) => port.postMessage([id, REPLY_ERROR, serializeError(error, 'E_HANDLER_FAILED')] satisfies ReplyFrame),
      );
    });
    port.once('close', () => this.#callers.delete(port));
  }

  /** The same shape as a stateful service's client: calls return a promise, casts return nothing. */
  proxy<Api extends object>(): Api {
    this.#proxy ??= methodProxy(
      (name) => this.#casts.has(name),
      (name, args) => this.call(name, args),
      (name, args) => this.cast(name, args),
    );
    return this.#proxy as Api;
  }

  /** As `kernel status` shows it. */
  status(): ServiceStatus {
    return {
      name: this.name,
      state: this.state,
      release: this.release,
      vsn: this.descriptor.vsn,
      threadId: this.current.threadIds[0] ?? 0,
      uptimeMs: Date.now() - this.startedAt,
      ...this.stats(),
      // Not measured for pools: each thread has its own heap, and asking would queue behind the calls.
      heapUsed: 0,
      durability: 'none',
      durableWrites: 0,
      failure: this.failure,
      restarts: 0,
      lastSwap: this.lastSwap,
      pool: { size: this.size, threadIds: [...this.current.threadIds] },
    };
  }

  stats(): { callsServed: number; castsServed: number; inFlight: number; queued: number } {
    let inFlight = 0;
    let queued = 0;
    for (const generation of [this.current, ...this.#retiring]) {
      const load = generation.load;
      inFlight += load.inFlight;
      queued += load.queued;
    }
    return { callsServed: this.callsServed, castsServed: this.castsServed, inFlight, queued };
  }

  /** Later calls are refused; the calls already made finish (within the drain timeout); the threads exit. */
  async stop(): Promise<void> {
    if (this.state === 'stopping' || this.state === 'stopped') return;
    this.state = 'stopping';
    await this.current.retire().catch((error: unknown) => this.#options.log('warn', `${this.name}: the pool did not close cleanly: ${errorMessage(error)}`));
    for (const port of this.#callers) port.close();
    this.#callers.clear();
    this.state = 'stopped';
  }

  #refusal(method: string, args: unknown[]): TheseusError | null {
    if (this.state !== 'running') return theseusError('E_SERVICE_DOWN', this.name, this.state === 'failed' ? (this.failure ?? 'failed') : `the service is ${this.state}`);
    // piscina clones the task when it hands it to a thread, possibly later and out of this call's
    // reach; anything it could not clone is refused here, as a stateful client refuses it.
    for (const arg of args) {
      if (arg === null || (typeof arg !== 'object' && typeof arg !== 'function' && typeof arg !== 'symbol')) continue;
      try {
        structuredClone(args);
      } catch (error) {
        return theseusError('E_ARGS_NOT_CLONEABLE', this.name, method, explainCloneFailure(args, 'args', error));
      }
      break;
    }
    return null;
  }

  #emitLogs(result: PoolTaskResult): void {
    if (result.logs) for (const record of result.logs) this.#options.onLog(record);
  }
}
