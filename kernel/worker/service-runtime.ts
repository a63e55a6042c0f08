// Runs inside a service's worker thread: owns the service's state between messages, serves the
// callers' ports one message at a time (GenServer semantics), and answers the kernel's control
// requests for a hot swap (suspend, snapshot, migrate, switch, resume).
//
// Lifecycle of the runtime (one worker = one generation of one service):
//
//   loaded --start--> serving <--resume-- suspended
//   loaded --migrate--> migrated --switch--> serving
//   serving --suspend--> draining --(drained)--> suspended --(stop)--> stopped
//                         draining --(drain timeout)--> serving
//
// Messages are taken from ports only while `serving`. Removing the last 'message' listener stops a
// MessagePort and leaves further messages queued inside it; that queue travels with the port when
// it is transferred, which is what makes a swap lose nothing.
//
// A suspend waits for the one running handler, never for the backlog: the messages already taken
// into the mailbox but not started leave with the ports (PortSet.queued), in order, and run first
// in whichever worker gets the ports next. Under overload the backlog can be long, and running it
// all in the old code first would make the swap slowest exactly when a fix is most urgent.

import type { MessagePort } from 'node:worker_threads';
import { getHeapStatistics } from 'node:v8';
import { inspect } from 'node:util';
import { ServiceClient } from '../common/client.ts';
import { errorMessage, serializeError, theseusError, type SwapPhase } from '../common/errors.ts';
import { findMigrationPath, formatPath, type MigrationStep } from '../common/migrations.ts';
import { DurableReplies } from './durable-replies.ts';
import { explainCloneFailure, findNonPlainData } from '../common/plain-data.ts';
import { decodeHttpRequest, encodeHttpReply, type WireHttpRequest } from '../common/http-codec.ts';
import { decodeServiceState, encodeServiceState } from '../common/state-codec.ts';
import {
  BATCH_HTTP,
  FRAME_BATCH,
  FRAME_CALL,
  preciseNow,
  REPLY_ERROR,
  REPLY_OK,
  type BatchedCall,
  type BatchedResult,
  type ControlRequests,
  type LogRecord,
  type PortSet,
  type QueuedFrame,
  type ReplyFrame,
  type RequestFrame,
  type ServiceDescriptor,
  type StateSnapshot,
  type WorkerStats,
} from '../common/protocol.ts';
import type { BaseContext, CallHandler, CastHandler, Migration, ServiceDefinition, ServiceLogger } from '../service.ts';

type Phase = 'loaded' | 'migrated' | 'serving' | 'draining' | 'suspended' | 'stopped';

type Handler = (ctx: unknown, ...args: unknown[]) => unknown;

/**
 * Where a message came from: its caller's port, or null when that caller went away while the
 * message waited (it still runs, since its effect on the state counts; its reply goes nowhere).
 */
type ReplyPort = MessagePort | null;

/** A FIFO of [port, frame] pairs with O(1) shift; arrays' shift() is O(n) once they grow. */
class Mailbox {
  #items: Array<ReplyPort | RequestFrame> = [];
  #head = 0;
  get size(): number {
    return (this.#items.length - this.#head) / 2;
  }
  push(port: ReplyPort, frame: RequestFrame): void {
    this.#items.push(port, frame);
  }
  shift(): [ReplyPort, RequestFrame] {
    const port = this.#items[this.#head] as ReplyPort;
    const frame = this.#items[this.#head + 1] as RequestFrame;
    this.#head += 2;
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return [port, frame];
  }
  /** Empties the mailbox, oldest first. */
  takeAll(): Array<[ReplyPort, RequestFrame]> {
    const all: Array<[ReplyPort, RequestFrame]> = [];
    while (this.size > 0) all.push(this.shift());
    return all;
  }
}

export interface RuntimeOptions {
  service: string;
  release: string;
  staticDir: string | null;
  config: Record<string, unknown>;
  checkpointEveryChanges: number;
  onCheckpointDue(): void;
  /** Reply durability: this worker writes its state here before any reply that depends on it. */
  durableStateDir: string | null;
  definition: ServiceDefinition;
  emitLog(record: LogRecord): void;
}

export class ServiceRuntime {
  readonly descriptor: ServiceDescriptor;
  #service: string;
  #release: string;
  #definition: ServiceDefinition;
  #calls = new Map<string, Handler>();
  #casts = new Map<string, Handler>();
  #emitLog: (record: LogRecord) => void;

  #phase: Phase = 'loaded';
  #state: unknown = undefined;
  /** The mutable context handed to handlers; `state` is set before each message. */
  #ctx: { state: unknown } & BaseContext;
  #log: ServiceLogger;

  /** Each caller's port, with the cell where this worker records the last call it started. */
  #inbound = new Map<MessagePort, Int32Array>();
  #listeners = new Map<MessagePort, (frame: RequestFrame) => void>();
  #watchedForClose = new WeakSet<MessagePort>();
  #outbound = new Map<string, ServiceClient>();
  #mailbox = new Mailbox();
  #busy = false;
  #onIdle: (() => void) | null = null;

  #callsServed = 0;
  #castsServed = 0;
  /** State changes since the last checkpoint, and when to ask for the next one. */
  #changesSinceCheckpoint = 0;
  #checkpointEveryChanges: number;
  #onCheckpointDue: () => void;
  /** Set in reply durability: every reply goes through it. */
  #durable: DurableReplies | null = null;

  constructor(options: RuntimeOptions) {
    this.#service = options.service;
    this.#release = options.release;
    this.#definition = options.definition;
    this.#emitLog = options.emitLog;
    this.#checkpointEveryChanges = options.checkpointEveryChanges;
    this.#onCheckpointDue = options.onCheckpointDue;
    for (const [name, fn] of Object.entries(options.definition.calls ?? {})) this.#calls.set(name, fn as Handler);
    for (const [name, fn] of Object.entries(options.definition.casts ?? {})) this.#casts.set(name, fn as Handler);
    this.descriptor = describeDefinition(options.definition);
    this.#log = createServiceLogger(this.#service, this.#release, this.#emitLog);
    if (options.durableStateDir !== null) {
      this.#durable = new DurableReplies({
        service: this.#service,
        release: this.#release,
        stateDir: options.durableStateDir,
        snapshot: () => ({ vsn: this.descriptor.vsn, bytes: encodeServiceState(this.#state, this.#service, 'at a durable write') }),
        restore: (snapshot) => {
          this.#state = decodeServiceState(snapshot.bytes, this.#service, 'after a failed durable write');
        },
        handlerRunning: () => this.#busy,
        onSettled: () => this.#notifyIfIdle(),
        logError: (message) => this.#log.error(message),
      });
    }
    const runtime = this;
    this.#ctx = {
      state: undefined,
      service: this.#service,
      release: this.#release,
      log: this.#log,
      staticDir: options.staticDir,
      config: Object.freeze({ ...options.config }),
      client<Api extends object>(name: string): Api {
        return runtime.#clientFor(name).proxy<Api>();
      },
    };
  }

  // -------------------------------------------------------------------------------------------
  // Control requests, one method per op of the protocol.

  async start({ ports }: ControlRequests['start']['request']): Promise<ControlRequests['start']['response']> {
    this.#expectPhase('start', 'loaded');
    this.#adoptOutbound(ports);
    const state = await this.#definition.init(this.#ctx);
    if (state === undefined) {
      throw theseusError('E_INVALID_SERVICE', this.#service, 'init() returned undefined; return the first state (null if there is none)');
    }
    this.#assertPlain(state, 'after init');
    this.#state = state;
    this.#durable?.adopted({ vsn: this.descriptor.vsn, bytes: encodeServiceState(state, this.#service, 'after init') });
    this.#durable?.serving();
    this.#serve(ports);
    return { stateBytes: 0 };
  }

  async suspend(request: ControlRequests['suspend']['request']): Promise<ControlRequests['suspend']['response']> {
    this.#expectPhase('suspend', 'serving');
    // From here no handler starts: new messages wait inside the ports, and those already in the
    // mailbox stay there (#pump starts nothing while draining). Only the running handler finishes.
    this.#phase = 'draining';
    for (const port of this.#inbound.keys()) this.#unlisten(port);
    const stoppedAt = preciseNow();
    const drained = await this.#waitIdle(request.drainTimeoutMs, false);
    if (!drained) {
      // Resume here rather than in the kernel: the worker is the only one that knows whether the
      // drain finished, so this side deciding avoids a race where ports are handed over after the
      // kernel has given up on them.
      const running = this.#busy ? 1 : 0;
      const outgoing = this.#outboundPending();
      const unwritten = this.#durable?.heldCount ?? 0;
      this.#resumeServing();
      const error = theseusError('E_DRAIN_TIMEOUT', this.#service, request.drainTimeoutMs, running, outgoing, unwritten, this.#mailbox.size);
      error.phase = 'suspend';
      throw error;
    }
    const drainedAt = preciseNow();
    let snapshot: StateSnapshot;
    try {
      snapshot = await this.#snapshot(request.snapshotVsn);
    } catch (error) {
      // The state was only read, never replaced: serving it again is safe.
      this.#resumeServing();
      throw error;
    }
    this.#phase = 'suspended';
    return { ports: this.#releasePorts(), snapshot, callsServed: this.#callsServed, castsServed: this.#castsServed, stoppedAt, drainedAt };
  }

  resume({ ports }: ControlRequests['resume']['request']): ControlRequests['resume']['response'] {
    this.#expectPhase('resume', 'suspended');
    if (ports) this.#adoptOutbound(ports);
    // The backlog it handed over comes back first, in its order; then the ports' own queues.
    this.#serve(ports ?? { inbound: [], outbound: {} });
    return {};
  }

  /** Back to serving after a drain that did not end in a hand-over: listen, and run the backlog. */
  #resumeServing(): void {
    this.#phase = 'serving';
    for (const port of this.#inbound.keys()) this.#listen(port);
    this.#pump();
  }

  async #snapshot(toVsn: string): Promise<StateSnapshot> {
    // Found here, in the old worker while it suspends: so the swap fails in phase 'suspend'.
    this.#assertPlain(this.#state, 'at snapshot', 'suspend');
    let state = this.#state;
    if (toVsn !== this.descriptor.vsn) {
      // A downgrade: the down migration runs here, in the newer code, before the older code sees it.
      const path = this.#pathOrThrow(this.descriptor.vsn, toVsn, 'down');
      state = await this.#runMigrations(state, path);
    }
    return { vsn: toVsn, bytes: encodeServiceState(state, this.#service, 'at snapshot', 'suspend') };
  }

  async migrate({ snapshot }: ControlRequests['migrate']['request']): Promise<ControlRequests['migrate']['response']> {
    this.#expectPhase('migrate', 'loaded');
    let state = decodeServiceState(snapshot.bytes, this.#service, 'at migrate');
    if (snapshot.vsn !== this.descriptor.vsn) {
      // An upgrade: the up migration runs here, in the new code.
      const path = this.#pathOrThrow(snapshot.vsn, this.descriptor.vsn, 'up');
      state = await this.#runMigrations(state, path);
    }
    this.#state = state;
    this.#durable?.adopted(snapshot.vsn === this.descriptor.vsn ? snapshot : { vsn: this.descriptor.vsn, bytes: encodeServiceState(state, this.#service, 'after migrate') });
    this.#phase = 'migrated';
    return { stateBytes: snapshot.bytes.byteLength };
  }

  switchIn({ ports }: ControlRequests['switch']['request']): ControlRequests['switch']['response'] {
    this.#expectPhase('switch', 'migrated');
    this.#adoptOutbound(ports);
    // The pause ends when this code can start a handler: stamped before the carried messages
    // start running, which #serve does at once.
    const servingAt = preciseNow();
    this.#durable?.serving();
    this.#serve(ports);
    return { servingAt };
  }

  attach({ link }: ControlRequests['attach']['request']): ControlRequests['attach']['response'] {
    this.#inbound.set(link.port, link.taken);
    if (this.#phase === 'serving') this.#listen(link.port);
    return {};
  }

  rewire({ service, link }: ControlRequests['rewire']['request']): ControlRequests['rewire']['response'] {
    const client = this.#outbound.get(service);
    if (client) {
      client.setMethods(link.methods);
      client.rebind(link.port, link.taken);
    } else {
      this.#outbound.set(service, new ServiceClient(service, link.port, link.methods, link.taken));
    }
    return {};
  }

  peerDown({ service, reason }: ControlRequests['peer-down']['request']): ControlRequests['peer-down']['response'] {
    this.#outbound.get(service)?.fail(reason);
    return {};
  }

  peer({ service, methods }: ControlRequests['peer']['request']): ControlRequests['peer']['response'] {
    this.#outbound.get(service)?.setMethods(methods);
    return {};
  }

  checkpoint(): ControlRequests['checkpoint']['response'] {
    if (this.#phase !== 'serving' && this.#phase !== 'draining') {
      throw theseusError('E_BAD_PHASE', `${this.#service}@${this.#release} cannot checkpoint while ${this.#phase}`);
    }
    // Between two messages the state is whole: handlers never mutate it, they return the next one.
    this.#assertPlain(this.#state, 'at checkpoint');
    this.#changesSinceCheckpoint = 0;
    return { snapshot: { vsn: this.descriptor.vsn, bytes: encodeServiceState(this.#state, this.#service, 'at checkpoint') } };
  }

  async convert({ snapshot, toVsn }: ControlRequests['convert']['request']): Promise<ControlRequests['convert']['response']> {
    const path = this.#pathOrThrow(snapshot.vsn, toVsn, 'down');
    const state = await this.#runMigrations(decodeServiceState(snapshot.bytes, this.#service, 'at convert'), path);
    return { snapshot: { vsn: toVsn, bytes: encodeServiceState(state, this.#service, 'at convert') } };
  }

  async health(): Promise<{ healthy: boolean; reason?: string }> {
    if (!this.#definition.health) return { healthy: true };
    if (this.#phase !== 'serving') return { healthy: true, reason: `not serving (${this.#phase})` };
    try {
      // Outside the mailbox on purpose: a health check must answer even while a handler runs.
      const verdict = await this.#definition.health({ ...this.#ctx, state: this.#state } as never);
      if (verdict === true) return { healthy: true };
      return { healthy: false, reason: typeof verdict === 'string' ? verdict : 'health() returned false' };
    } catch (error) {
      return { healthy: false, reason: `health() threw: ${errorMessage(error)}` };
    }
  }

  stats(): WorkerStats {
    return {
      callsServed: this.#callsServed,
      castsServed: this.#castsServed,
      inFlight: this.#busy ? 1 : 0,
      queued: this.#mailbox.size,
      // V8's own figure: process.memoryUsage() would also read the process's RSS from /proc.
      heapUsed: getHeapStatistics().used_heap_size,
      durableWrites: this.#durable?.writes ?? 0,
    };
  }

  async stop({ runTerminate, reason, drainTimeoutMs, snapshot }: ControlRequests['stop']['request']): Promise<ControlRequests['stop']['response']> {
    const wasServing = this.#phase === 'serving';
    for (const port of this.#inbound.keys()) this.#unlisten(port);
    // A stop, unlike a swap, has no next worker to hand a backlog to: it serves it first.
    if (wasServing && !(await this.#waitIdle(drainTimeoutMs, true)) && this.#durable) {
      // The backlog outlasted the drain; what has run must still reach the disk, from here.
      await this.#waitIdle(drainTimeoutMs, false);
    }
    // The final state, after the drain: what a restart resumes from. In reply durability the
    // worker writes its file itself, and nobody else may while a write of its own could still be
    // under way: `persisted` tells the kernel not to.
    const final: ControlRequests['stop']['response'] = snapshot && wasServing && this.#state !== undefined ? this.#finalSnapshot() : {};
    if (this.#durable) {
      final.persisted = true;
      if (!this.#durable.settled) this.#log.error(`stopped with ${this.#durable.heldCount} replies still waiting for their state to be written`);
    }
    this.#phase = 'stopped';
    if (runTerminate && this.#definition.terminate && this.#state !== undefined) {
      this.#ctx.state = this.#state;
      await this.#definition.terminate(this.#ctx as never, reason);
    }
    for (const port of this.#inbound.keys()) port.close();
    for (const client of this.#outbound.values()) client.close('the calling service stopped');
    this.#inbound.clear();
    this.#outbound.clear();
    return final;
  }

  /** The state at stop, or nothing (and the reason in the log) when it is not plain: the last checkpoint stays. */
  #finalSnapshot(): { snapshot?: StateSnapshot } {
    try {
      this.#assertPlain(this.#state, 'at stop');
      return { snapshot: { vsn: this.descriptor.vsn, bytes: encodeServiceState(this.#state, this.#service, 'at stop') } };
    } catch (error) {
      this.#log.error(`the final state was not saved: ${errorMessage(error)}`, { code: serializeError(error).code });
      return {};
    }
  }

  // -------------------------------------------------------------------------------------------
  // Serving messages.

  /**
   * Starts serving these ports. The messages another worker had taken from them but not started
   * go into the mailbox first, so they run before anything still inside the ports, in their order.
   */
  #serve(ports: PortSet | { inbound: PortSet['inbound']; queued?: QueuedFrame[] }): void {
    for (const link of ports.inbound) this.#inbound.set(link.port, link.taken);
    for (const [index, frame] of ports.queued ?? []) this.#mailbox.push(index < 0 ? null : (ports.inbound[index]?.port ?? null), frame);
    this.#phase = 'serving';
    for (const port of this.#inbound.keys()) this.#listen(port);
    this.#pump();
  }

  #listen(port: MessagePort): void {
    if (this.#listeners.has(port)) return;
    const listener = (frame: RequestFrame) => this.#receive(port, frame);
    this.#listeners.set(port, listener);
    port.on('message', listener);
    if (!this.#watchedForClose.has(port)) {
      this.#watchedForClose.add(port);
      // A caller that goes away (its thread ended, or it closed its client) closes its end; drop
      // it so it is not handed to the next worker. Kept while suspended, unlike the listener.
      port.once('close', () => {
        this.#listeners.delete(port);
        this.#inbound.delete(port);
      });
    }
  }

  #unlisten(port: MessagePort): void {
    const listener = this.#listeners.get(port);
    if (!listener) return;
    port.off('message', listener);
    this.#listeners.delete(port);
  }

  #receive(port: MessagePort, frame: RequestFrame): void {
    if (this.#busy || this.#mailbox.size > 0 || this.#phase !== 'serving') {
      this.#mailbox.push(port, frame);
      return;
    }
    this.#handle(port, frame);
  }

  /** Starts queued messages one after another, but never while draining: those stay queued. */
  #pump(): void {
    while (!this.#busy && this.#mailbox.size > 0 && this.#phase === 'serving') {
      const [port, frame] = this.#mailbox.shift();
      this.#handle(port, frame);
    }
    if (!this.#busy) this.#notifyIfIdle();
  }

  /** Sends a reply, after the state it may reveal is on disk when the service asks for that. */
  #reply(port: ReplyPort, frame: ReplyFrame): void {
    if (this.#durable) this.#durable.send(port, frame);
    else port?.postMessage(frame);
  }

  #handle(port: ReplyPort, frame: RequestFrame): void {
    const kind = frame[0];
    if (kind === FRAME_BATCH) {
      this.#handleBatch(port, frame);
      return;
    }
    const method = frame[2];
    const handler = kind === FRAME_CALL ? this.#calls.get(method) : this.#casts.get(method);
    if (handler === undefined) {
      this.#fail(port, frame, theseusError('E_UNKNOWN_METHOD', this.#service, method, [...this.#calls.keys(), ...this.#casts.keys()].join(', ')));
      return;
    }
    // From here the call counts as started: if this thread dies, the caller rejects it rather than
    // sending it again (see ServiceClient).
    const taken = port && this.#inbound.get(port);
    if (taken) Atomics.store(taken, 0, frame[1]);
    this.#ctx.state = this.#state;
    let result: unknown;
    try {
      const args = frame[3];
      result = args === undefined ? handler(this.#ctx) : handler(this.#ctx, ...args);
    } catch (error) {
      this.#fail(port, frame, error);
      return;
    }
    if (result !== null && typeof result === 'object' && typeof (result as Promise<unknown>).then === 'function') {
      this.#busy = true;
      (result as Promise<unknown>).then(
        (value) => {
          this.#busy = false;
          this.#complete(port, frame, value);
          this.#pump();
        },
        (error: unknown) => {
          this.#busy = false;
          this.#fail(port, frame, error);
          this.#pump();
        },
      );
      return;
    }
    this.#complete(port, frame, result);
  }

  #complete(port: ReplyPort, frame: RequestFrame, result: unknown): void {
    const [kind, id, method] = frame;
    if (kind === FRAME_CALL) {
      if (result === null || typeof result !== 'object' || !('reply' in result)) {
        this.#fail(port, frame, theseusError('E_BAD_HANDLER_RESULT', this.#service, method, describeValue(result)));
        return;
      }
      const { reply, state } = result as { reply: unknown; state?: unknown };
      if (state !== undefined && !this.#stateAcceptable(port, frame, state)) return;
      if (this.#durable || port === null) {
        // The reply leaves later (or never): check now that it can, while the state can still
        // be left as it was.
        const problem = replyProblem(reply);
        if (problem !== null) {
          this.#fail(port, frame, theseusError('E_REPLY_NOT_CLONEABLE', this.#service, method, problem));
          return;
        }
        this.#callsServed++;
        if (state !== undefined) this.#changeState(state);
        this.#reply(port, [id, REPLY_OK, reply]);
        return;
      }
      try {
        port.postMessage([id, REPLY_OK, reply]);
      } catch (error) {
        // The state is left as it was: the caller never saw this call succeed.
        this.#fail(port, frame, theseusError('E_REPLY_NOT_CLONEABLE', this.#service, method, explainCloneFailure(reply, 'reply', error)));
        return;
      }
      this.#callsServed++;
      if (state !== undefined) this.#changeState(state);
      return;
    }
    this.#castsServed++;
    if (result === undefined) return;
    if (result === null || typeof result !== 'object') {
      this.#fail(port, frame, theseusError('E_BAD_HANDLER_RESULT', this.#service, method, describeValue(result)));
      return;
    }
    const { state } = result as { state?: unknown };
    if (state !== undefined && this.#stateAcceptable(port, frame, state)) this.#changeState(state);
  }

  /**
   * The calls of a batch, one after another, as if each had come in its own message: each sees
   * the state the previous one left. One reply carries every outcome, in order.
   */
  #handleBatch(port: ReplyPort, frame: RequestFrame): void {
    const id = frame[1];
    const calls = (frame[3] ?? []) as BatchedCall[];
    const http = frame[2] === BATCH_HTTP;
    const results = new Array<BatchedResult>(calls.length);
    // The caller learns how far the batch got: if this thread dies, the calls that had started
    // fail (they may or may not have run) and the others are sent again to the restarted worker.
    const taken = port && this.#inbound.get(port);
    if (taken) {
      Atomics.store(taken, 1, 0);
      Atomics.store(taken, 0, id);
    }
    let index = 0;
    let wentAsync = false;
    const finish = () => {
      if (this.#durable) {
        // Each reply was checked as it was settled (#settleBatched), so the whole can go later.
        this.#reply(port, [id, REPLY_OK, results]);
      } else {
        try {
          port?.postMessage([id, REPLY_OK, results]);
        } catch (error) {
          port?.postMessage([id, REPLY_ERROR, serializeError(error, 'E_REPLY_NOT_CLONEABLE')]);
        }
      }
      if (wentAsync) {
        this.#busy = false;
        this.#pump();
      }
    };
    const runFrom = (): void => {
      while (index < calls.length) {
        const [method, args] = calls[index]!;
        const at = index++;
        if (taken) Atomics.store(taken, 1, index);
        const handler = this.#calls.get(method);
        if (handler === undefined) {
          results[at] = [REPLY_ERROR, serializeError(theseusError('E_UNKNOWN_METHOD', this.#service, method, [...this.#calls.keys(), ...this.#casts.keys()].join(', ')))];
          continue;
        }
        this.#ctx.state = this.#state;
        let result: unknown;
        try {
          if (http) result = handler(this.#ctx, decodeHttpRequest(args as unknown as WireHttpRequest));
          else result = args === undefined ? handler(this.#ctx) : handler(this.#ctx, ...args);
        } catch (error) {
          results[at] = [REPLY_ERROR, serializeError(error, 'E_HANDLER_FAILED')];
          continue;
        }
        if (result !== null && typeof result === 'object' && typeof (result as Promise<unknown>).then === 'function') {
          wentAsync = true;
          this.#busy = true;
          (result as Promise<unknown>).then(
            (value) => {
              results[at] = this.#settleBatched(method, value, http);
              runFrom();
            },
            (error: unknown) => {
              results[at] = [REPLY_ERROR, serializeError(error, 'E_HANDLER_FAILED')];
              runFrom();
            },
          );
          return;
        }
        results[at] = this.#settleBatched(method, result, http);
      }
      finish();
    };
    runFrom();
  }

  /**
   * One batched call's outcome. Its reply is checked before its state is kept: the batch is
   * posted as a whole at the end, too late to leave the state as it was for one reply that cannot
   * be cloned.
   */
  #settleBatched(method: string, result: unknown, http: boolean): BatchedResult {
    if (result === null || typeof result !== 'object' || !('reply' in result)) {
      return [REPLY_ERROR, serializeError(theseusError('E_BAD_HANDLER_RESULT', this.#service, method, describeValue(result)))];
    }
    let { reply } = result as { reply: unknown };
    const { state } = result as { state?: unknown };
    if (http) {
      // Encoded here, off the front door's thread; what comes out is strings and bytes.
      const encoded = encodeHttpReply(reply);
      if ('problem' in encoded) return [REPLY_ERROR, serializeError(theseusError('E_HTTP_BAD_REPLY', `${this.#service}.${method}()`, encoded.problem))];
      reply = encoded;
    } else {
      const problem = replyProblem(reply);
      if (problem !== null) return [REPLY_ERROR, serializeError(theseusError('E_REPLY_NOT_CLONEABLE', this.#service, method, problem))];
    }
    if (state !== undefined && this.descriptor.stateCheck === 'every-change') {
      const problem = findNonPlainData(state);
      if (problem !== null) return [REPLY_ERROR, serializeError(theseusError('E_STATE_NOT_CLONEABLE', this.#service, `after ${method}()`, problem))];
    }
    this.#callsServed++;
    if (state !== undefined) this.#changeState(state);
    return [REPLY_OK, reply];
  }

  #changeState(state: unknown): void {
    // Handing back the state it was given is no change: nothing to write or to checkpoint.
    if (state === this.#state) return;
    this.#state = state;
    this.#durable?.changed();
    if (this.#checkpointEveryChanges > 0 && ++this.#changesSinceCheckpoint === this.#checkpointEveryChanges) this.#onCheckpointDue();
  }

  #stateAcceptable(port: ReplyPort, frame: RequestFrame, state: unknown): boolean {
    if (this.descriptor.stateCheck !== 'every-change') return true;
    const problem = findNonPlainData(state);
    if (problem === null) return true;
    this.#fail(port, frame, theseusError('E_STATE_NOT_CLONEABLE', this.#service, `after ${frame[2]}()`, problem));
    return false;
  }

  #fail(port: ReplyPort, frame: RequestFrame, error: unknown): void {
    const [kind, id, method] = frame;
    const serialized = serializeError(error, 'E_HANDLER_FAILED');
    if (kind === FRAME_CALL) {
      this.#reply(port, [id, REPLY_ERROR, serialized]);
      return;
    }
    // A cast has nobody to answer; the log is where its failure shows.
    this.#log.error(`cast ${method}() failed: ${serialized.message}`, { code: serialized.code });
  }

  // -------------------------------------------------------------------------------------------
  // Draining and ports.

  #outboundPending(): number {
    let pending = 0;
    for (const client of this.#outbound.values()) pending += client.pendingCount;
    return pending;
  }

  /**
   * No handler runs, no outgoing call waits, every reply is out (in reply durability, after its
   * state was written), and, when `withBacklog`, nothing waits in the mailbox either.
   */
  #isIdle(withBacklog: boolean): boolean {
    return !this.#busy && (!withBacklog || this.#mailbox.size === 0) && this.#outboundPending() === 0 && (this.#durable?.settled ?? true);
  }

  #notifyIfIdle(): void {
    this.#onIdle?.();
  }

  /** Resolves true once idle (see #isIdle), false after `timeoutMs`. */
  #waitIdle(timeoutMs: number, withBacklog: boolean): Promise<boolean> {
    if (this.#isIdle(withBacklog)) return Promise.resolve(true);
    return new Promise((resolve) => {
      // Outgoing calls settle without passing through #pump (e.g. a fire-and-forget call), so poll
      // them as well; the poll only runs while a drain is waiting.
      const poll = setInterval(() => this.#notifyIfIdle(), 1);
      const timer = setTimeout(() => finish(false), timeoutMs);
      const finish = (drained: boolean) => {
        clearInterval(poll);
        clearTimeout(timer);
        this.#onIdle = null;
        resolve(drained);
      };
      this.#onIdle = () => {
        if (this.#isIdle(withBacklog)) finish(true);
      };
    });
  }

  /** Hands over every port, and the backlog taken from them, each message pointing at its caller. */
  #releasePorts(): PortSet {
    const inbound = [...this.#inbound].map(([port, taken]) => ({ port, taken }));
    const indexOf = new Map(inbound.map((link, index) => [link.port, index]));
    const queued: QueuedFrame[] = this.#mailbox.takeAll().map(([port, frame]) => [port === null ? -1 : (indexOf.get(port) ?? -1), frame]);
    this.#inbound.clear();
    const outbound: PortSet['outbound'] = {};
    for (const [name, client] of this.#outbound) {
      outbound[name] = { port: client.detach(), methods: client.methods, taken: client.taken };
    }
    // Keep the client objects: a resume rebinds them to the ports it brings back.
    return queued.length > 0 ? { inbound, outbound, queued } : { inbound, outbound };
  }

  #adoptOutbound(ports: PortSet): void {
    for (const [name, { port, methods, taken }] of Object.entries(ports.outbound)) {
      const existing = this.#outbound.get(name);
      if (existing) {
        existing.rebind(port, taken);
        existing.setMethods(methods);
      } else {
        this.#outbound.set(name, new ServiceClient(name, port, methods, taken));
      }
    }
  }

  #clientFor(name: string): ServiceClient {
    const client = this.#outbound.get(name);
    if (client) return client;
    if (!this.descriptor.uses.includes(name)) {
      throw theseusError('E_NOT_IN_USES', this.#service, name);
    }
    throw theseusError('E_UNKNOWN_SERVICE', name, [...this.#outbound.keys()].join(', '));
  }

  // -------------------------------------------------------------------------------------------
  // State and migrations.

  #pathOrThrow(from: string, to: string, direction: 'up' | 'down'): MigrationStep[] {
    const path = findMigrationPath(this.descriptor.migrations, from, to, direction);
    if (!path) {
      const error = theseusError('E_NO_MIGRATION_PATH', this.#service, from, to, direction, `${this.#service}@${this.#release}`);
      error.phase = 'migrate';
      throw error;
    }
    return path;
  }

  async #runMigrations(initial: unknown, path: MigrationStep[]): Promise<unknown> {
    let state = initial;
    for (const step of path) {
      const label = `${step.from} -> ${step.to} (${step.direction})`;
      const migration = this.#migrationFor(step);
      try {
        state = await (step.direction === 'up' ? migration.up(state, this.#ctx) : migration.down!(state, this.#ctx));
      } catch (error) {
        const failure = theseusError('E_MIGRATION_FAILED', this.#service, label, errorMessage(error));
        failure.phase = 'migrate';
        throw failure;
      }
      const problem = state === undefined ? 'it returned undefined' : findNonPlainData(state);
      if (problem !== null) {
        const failure = theseusError('E_MIGRATION_BAD_STATE', this.#service, label, problem);
        failure.phase = 'migrate';
        throw failure;
      }
    }
    if (path.length > 0) this.#log.debug(`migrated state ${formatPath(path)}`);
    return state;
  }

  #migrationFor(step: MigrationStep): Migration {
    const [from, to] = step.direction === 'up' ? [step.from, step.to] : [step.to, step.from];
    return this.#definition.migrations!.find((m) => m.from === from && m.to === to)!;
  }

  #assertPlain(state: unknown, where: string, phase?: SwapPhase): void {
    const problem = findNonPlainData(state);
    if (problem === null) return;
    const error = theseusError('E_STATE_NOT_CLONEABLE', this.#service, where, problem);
    if (phase) error.phase = phase;
    throw error;
  }

  #expectPhase(op: string, expected: Phase): void {
    if (this.#phase !== expected) {
      throw theseusError('E_BAD_PHASE', `${this.#service}@${this.#release} cannot '${op}' while ${this.#phase} (expected ${expected})`);
    }
  }
}

/** A handler's `log`: each line is a record carrying the service's name and release. */
export function createServiceLogger(service: string, release: string, emitLog: (record: LogRecord) => void): ServiceLogger {
  const emit = (level: LogRecord['level'], message: string, data?: unknown) => {
    const record: LogRecord = { level, service, release, message: String(message), time: Date.now() };
    // Data that cannot cross threads is shown as text rather than lost.
    if (data !== undefined) record.data = findNonPlainData(data, 'data') === null ? data : inspect(data);
    emitLog(record);
  };
  return {
    debug: (message, data) => emit('debug', message, data),
    info: (message, data) => emit('info', message, data),
    warn: (message, data) => emit('warn', message, data),
    error: (message, data) => emit('error', message, data),
  };
}

/** Why a reply could not be sent to another thread, or null when it can. */
function replyProblem(reply: unknown): string | null {
  if (reply !== null && typeof reply === 'object') return findNonPlainData(reply, 'reply');
  if (typeof reply === 'function' || typeof reply === 'symbol') return `the reply is a ${typeof reply}`;
  return null;
}

/** How a handler's bad result is described in E_BAD_HANDLER_RESULT. */
export function describeValue(value: unknown): string {
  if (value === undefined) return 'undefined';
  if (value === null) return 'null';
  if (typeof value === 'object') return `an object without 'reply' (keys: ${Object.keys(value).join(', ') || 'none'})`;
  return `a ${typeof value}`;
}

export function describeDefinition(definition: ServiceDefinition): ServiceDescriptor {
  return {
    vsn: definition.vsn,
    calls: Object.keys(definition.calls ?? {}),
    casts: Object.keys(definition.casts ?? {}),
    uses: [...(definition.uses ?? [])],
    migrations: (definition.migrations ?? []).map((m) => ({ from: m.from, to: m.to, hasDown: typeof m.down === 'function' })),
    hasTerminate: typeof definition.terminate === 'function',
    hasHealth: typeof definition.health === 'function',
    stateCheck: definition.stateCheck ?? 'transitions',
  };
}

/** Checks a module's default export before anything runs; returns a reason or null. */
export function validateDefinition(value: unknown): string | null {
  if (value === null || typeof value !== 'object') return 'the default export is not an object';
  const def = value as Partial<ServiceDefinition> & Record<string, unknown>;
  if (typeof def.vsn !== 'string' || def.vsn === '') return "'vsn' must be a non-empty string";
  if (typeof def.init !== 'function') return "'init' must be a function that returns the first state";
  for (const group of ['calls', 'casts'] as const) {
    const handlers = def[group];
    if (handlers === undefined) continue;
    if (handlers === null || typeof handlers !== 'object') return `'${group}' must be an object of functions`;
    for (const [name, fn] of Object.entries(handlers)) {
      if (typeof fn !== 'function') return `${group}.${name} is not a function`;
    }
  }
  const calls = Object.keys(def.calls ?? {});
  const clash = Object.keys(def.casts ?? {}).find((name) => calls.includes(name));
  if (clash) return `'${clash}' is both a call and a cast`;
  if (def.uses !== undefined && (!Array.isArray(def.uses) || def.uses.some((u) => typeof u !== 'string'))) {
    return "'uses' must be an array of service names";
  }
  if (def.terminate !== undefined && typeof def.terminate !== 'function') return "'terminate' must be a function";
  if (def.health !== undefined && typeof def.health !== 'function') return "'health' must be a function";
  if (def.stateCheck !== undefined && def.stateCheck !== 'transitions' && def.stateCheck !== 'every-change') {
    return "'stateCheck' must be 'transitions' or 'every-change'";
  }
  const migrations = def.migrations ?? [];
  if (!Array.isArray(migrations)) return "'migrations' must be an array";
  const seen = new Set<string>();
  for (const [index, m] of migrations.entries()) {
    const migration = m as Partial<Migration>;
    if (typeof migration.from !== 'string' || typeof migration.to !== 'string') return `migrations[${index}] needs string 'from' and 'to'`;
    if (migration.from === migration.to) return `migrations[${index}] goes from '${migration.from}' to itself`;
    if (typeof migration.up !== 'function') return `migrations[${index}] (${migration.from} -> ${migration.to}) needs an 'up' function`;
    if (migration.down !== undefined && typeof migration.down !== 'function') return `migrations[${index}].down must be a function`;
    const key = `${migration.from}->${migration.to}`;
    if (seen.has(key)) return `two migrations go from '${migration.from}' to '${migration.to}'`;
    seen.add(key);
  }
  return null;
}

export type { CallHandler, CastHandler };
