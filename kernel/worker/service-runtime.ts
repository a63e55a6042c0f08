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
//   (any) --stop--> stopped ;  a loaded worker may also only convert a state (convert) and stop
//
// The transitions are one table (allowedTransitions), and every change goes through #transition.
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
import { errorMessage, serializeError, theseusError } from '../common/errors.ts';
import { explainCloneFailure, findNonPlainData } from '../common/plain-data.ts';
import {
  FRAME_BATCH,
  FRAME_CALL,
  REPLY_ERROR,
  REPLY_OK,
  type ControlRequests,
  type HandoffMessage,
  type LogRecord,
  type PortSet,
  type QueuedFrame,
  type ReplyFrame,
  type RequestFrame,
  type ServiceDescriptor,
  type StateSnapshot,
  type WorkerStats,
  type BatchedResult,
} from '../common/protocol.ts';
import { assertPlainState, decodeServiceState, encodeServiceState } from '../common/state-codec.ts';
import { preciseNow } from '../common/time.ts';
import type { BaseContext, ServiceDefinition, ServiceLogger } from '../service.ts';
import { CallMetrics, callMetricsEnabled } from '../common/call-metrics.ts';
import { argsChecksOf, argsRefused, type ArgsChecks } from './arg-checks.ts';
import { runBatch } from './batch.ts';
import { Channels } from './channels.ts';
import { createServiceLogger, describeDefinition } from './definition.ts';
import { DurableReplies } from './durable-replies.ts';
import { readCallResult, readCastResult, replyProblem } from './handler-result.ts';
import { Mailbox, type ReplyPort } from './mailbox.ts';
import { MigrationRunner } from './migration-runner.ts';
import { checkTransition, type TransitionTable } from '../common/lifecycle.ts';
import { isKeyedRest, isKeyedSnapshot, TrackedStore, type KeyedSnapshot } from './keyed-store.ts';
import { receiveHandOff, StoreCopy } from './store-copy.ts';
import type { MigrationStep } from '../common/migrations.ts';

type Phase = 'loaded' | 'migrated' | 'serving' | 'draining' | 'suspended' | 'stopped';

const allowedTransitions: TransitionTable<Phase> = {
  loaded: ['serving', 'migrated', 'stopped'],
  migrated: ['serving', 'stopped'],
  serving: ['draining', 'stopped'],
  draining: ['suspended', 'serving', 'stopped'],
  suspended: ['serving', 'stopped'],
  stopped: [],
};

type Handler = (ctx: unknown, ...args: unknown[]) => unknown;
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
  /** Socket handlers (open, message, close, restarted), for the WebSocket front door's events. */
  #sockets = new Map<string, Handler>();
  /** The argument checks of the methods that declare their arguments. */
  #argsChecks: ArgsChecks;

  #phase: Phase = 'loaded';
  #state: unknown = undefined;
  /** The keyed store (`keyed: true`), beside the small state; null when the service is not keyed. */
  #store: TrackedStore | null;
  /** A copy of the store to a new worker while this one serves (a swap's pre-copy), until suspend. */
  #precopy: StoreCopy | null = null;
  /** The mutable context handed to handlers; `state` is set before each message. */
  #ctx: { state: unknown; readonly store: TrackedStore } & BaseContext;
  #log: ServiceLogger;

  /** Callers' ports and this service's own clients. */
  #channels: Channels;
  #migrations: MigrationRunner;
  #mailbox = new Mailbox();
  #busy = false;
  #onIdle: (() => void) | null = null;

  #callsServed = 0;
  #castsServed = 0;
  /** Calls and casts by outcome, and call latency, for /metrics; null when turned off. */
  #metrics: CallMetrics | null = callMetricsEnabled() ? new CallMetrics() : null;
  /** When the message being handled started (performance.now()); one handler runs at a time. */
  #messageStartedAt = 0;
  /** State changes since the last checkpoint, and when to ask for the next one. */
  #changesSinceCheckpoint = 0;
  /** A checkpoint was asked for during a pre-copy and skipped. */
  #checkpointOwed = false;
  #checkpointEveryChanges: number;
  /**
   * Until when V8 may still be busy with what encoding the state left behind (performance.now()).
   * Measured with a million entries: about as long again as the encoding took. A thread that ends
   * before then makes the main thread wait for it as it joins the thread, hundreds of ms in which
   * no call is answered; so the thread waits first (exitDelayMs).
   */
  #settledAt = 0;
  #onCheckpointDue: () => void;
  /** Set in reply durability: every reply goes through it. */
  #durable: DurableReplies | null = null;

  constructor(options: RuntimeOptions) {
    this.#service = options.service;
    this.#release = options.release;
    this.#definition = options.definition;
    this.#checkpointEveryChanges = options.checkpointEveryChanges;
    this.#onCheckpointDue = options.onCheckpointDue;
    for (const [name, fn] of Object.entries(options.definition.calls ?? {})) this.#calls.set(name, fn as Handler);
    for (const [name, fn] of Object.entries(options.definition.casts ?? {})) this.#casts.set(name, fn as Handler);
    for (const [name, fn] of Object.entries(options.definition.sockets ?? {})) this.#sockets.set(name, fn as Handler);
    this.descriptor = describeDefinition(options.definition);
    this.#argsChecks = argsChecksOf(options.definition);
    this.#channels = new Channels(this.#service, this.descriptor.uses, (port, frame) => this.#receive(port, frame));
    this.#migrations = new MigrationRunner(this.#service, this.#release, options.definition, this.descriptor);
    this.#log = createServiceLogger(this.#service, this.#release, options.emitLog);
    this.#store = options.definition.keyed === true ? new TrackedStore(this.#service, () => this.#storeWritten()) : null;
    if (options.durableStateDir !== null) {
      this.#durable = new DurableReplies({
        service: this.#service,
        release: this.#release,
        stateDir: options.durableStateDir,
        snapshot: () => ({ vsn: this.descriptor.vsn, bytes: encodeServiceState(this.#wholeState(), this.#service, 'at a durable write') }),
        restore: (snapshot) => {
          this.#adoptWhole(decodeServiceState(snapshot.bytes, this.#service, 'after a failed durable write'));
        },
        handlerRunning: () => this.#busy,
        onSettled: () => this.#notifyIfIdle(),
        logError: (message) => this.#log.error(message),
      });
    }
    const runtime = this;
    this.#ctx = {
      state: undefined,
      get store(): TrackedStore {
        if (runtime.#store === null) throw theseusError('E_NOT_KEYED', runtime.#service);
        return runtime.#store;
      },
      service: this.#service,
      release: this.#release,
      log: this.#log,
      staticDir: options.staticDir,
      config: Object.freeze({ ...options.config }),
      client<Api extends object>(name: string): Api {
        return runtime.#channels.client(name).proxy<Api>();
      },
    };
    // Not enumerable: a spread of the context (a service's own { ...ctx }) must not throw in a service that is not keyed.
    Object.defineProperty(this.#ctx, 'store', { enumerable: false });
  }

  // -------------------------------------------------------------------------------------------
  // Control requests, one method per op of the protocol.

  async start({ ports }: ControlRequests['start']['request']): Promise<ControlRequests['start']['response']> {
    this.#expectPhase('start', 'loaded');
    await this.#init(ports.outbound);
    this.#durable?.serving();
    this.#serve(ports);
    return { stateBytes: 0 };
  }

  /** The `init` op: the first state, not served until the switch (a service a swap adds). */
  async initOnly({ ports }: ControlRequests['init']['request']): Promise<ControlRequests['init']['response']> {
    this.#expectPhase('init', 'loaded');
    await this.#init(ports.outbound);
    this.#transition('migrated');
    return { stateBytes: 0 };
  }

  async #init(outbound: PortSet['outbound']): Promise<void> {
    this.#channels.adoptOutbound(outbound);
    const state = await this.#definition.init(this.#ctx);
    if (state === undefined) {
      throw theseusError('E_INVALID_SERVICE', this.#service, 'init() returned undefined; return the first state (null if there is none)');
    }
    assertPlainState(state, this.#service, 'after init');
    this.#state = state;
    this.#durable?.adopted({ vsn: this.descriptor.vsn, bytes: encodeServiceState(this.#wholeState(), this.#service, 'after init') });
  }

  async suspend(request: ControlRequests['suspend']['request']): Promise<ControlRequests['suspend']['response']> {
    this.#expectPhase('suspend', 'serving');
    // From here no handler starts: new messages wait inside the ports, and those already in the
    // mailbox stay there (#pump starts nothing while draining). Only the running handler finishes.
    this.#transition('draining');
    this.#channels.stopListening();
    const stoppedAt = preciseNow();
    const drained = await this.#waitIdle(request.drainTimeoutMs, false);
    const handoff = request.handoff ?? this.#precopy?.port;
    if (!drained) {
      // The new worker waiting on the hand-off learns at once that no state is coming.
      this.#endPrecopy();
      handoff?.close();
      // Resume here rather than in the kernel: the worker is the only one that knows whether the
      // drain finished, so this side deciding avoids a race where ports are handed over after the
      // kernel has given up on them.
      const running = this.#busy ? 1 : 0;
      const outgoing = this.#channels.outboundPending();
      const unwritten = this.#durable?.heldCount ?? 0;
      this.#resumeServing();
      const error = theseusError('E_DRAIN_TIMEOUT', this.#service, request.drainTimeoutMs, running, outgoing, unwritten, this.#mailbox.size);
      error.phase = 'suspend';
      throw error;
    }
    const drainedAt = preciseNow();
    let snapshot: StateSnapshot;
    // After a pre-copy, only the keys written since the last round go now, then the small state;
    // unless more keys were written than the store holds (a sliding window written faster than a
    // round): then the whole store is the smaller message, and replaces the copy.
    const precopy = this.#precopy?.restIsSmaller ? this.#precopy : null;
    try {
      if (precopy) {
        precopy.sendRest();
        snapshot = await this.#snapshotRest(request.snapshotVsn);
      } else snapshot = await this.#settling(() => this.#snapshot(request.snapshotVsn));
    } catch (error) {
      // The state was only read, never replaced: serving it again is safe.
      this.#endPrecopy();
      handoff?.close();
      this.#resumeServing();
      throw error;
    }
    this.#endPrecopy();
    this.#transition('suspended');
    const snapshotAt = preciseNow();
    const served = { callsServed: this.#callsServed, castsServed: this.#castsServed, stoppedAt, drainedAt, snapshotAt };
    if (handoff) {
      // Straight to the new worker, which starts migrating while the kernel still reads this
      // answer. This worker's own state is untouched, so a roll-back resumes it as it was.
      const message: HandoffMessage = precopy ? { kind: 'snapshot', snapshot, precopied: true } : { kind: 'snapshot', snapshot };
      handoff.postMessage(message, [snapshot.bytes.buffer as ArrayBuffer]);
      return { ports: this.#channels.release(this.#mailbox.takeAll()), ...served };
    }
    return { ports: this.#channels.release(this.#mailbox.takeAll()), snapshot, ...served };
  }

  resume({ ports }: ControlRequests['resume']['request']): ControlRequests['resume']['response'] {
    this.#expectPhase('resume', 'suspended');
    this.#endPrecopy();
    this.#payCheckpointOwed();
    if (ports) this.#channels.adoptOutbound(ports.outbound);
    // The backlog it handed over comes back first, in its order; then the ports' own queues.
    this.#serve(ports ?? { inbound: [], outbound: {} });
    return {};
  }

  /** Back to serving after a drain that did not end in a hand-over: listen, and run the backlog. */
  #resumeServing(): void {
    this.#transition('serving');
    this.#payCheckpointOwed();
    this.#channels.listenAll();
    this.#pump();
  }

  async #snapshot(toVsn: string): Promise<StateSnapshot> {
    // Found here, in the old worker while it suspends: so the swap fails in phase 'suspend'.
    assertPlainState(this.#state, this.#service, 'at snapshot', 'suspend');
    let state = this.#wholeState();
    if (toVsn !== this.descriptor.vsn) {
      // A downgrade: the down migration runs here, in the newer code, before the older code sees it.
      state = await this.#migrateWhole(state, this.#migrations.pathOrThrow(this.descriptor.vsn, toVsn, 'down'));
    }
    return { vsn: toVsn, bytes: encodeServiceState(state, this.#service, 'at snapshot', 'suspend') };
  }

  /** After a pre-copy: the small state alone (down-migrated on a downgrade); the store went before it. */
  async #snapshotRest(toVsn: string): Promise<StateSnapshot> {
    assertPlainState(this.#state, this.#service, 'at snapshot', 'suspend');
    let state = this.#state;
    if (toVsn !== this.descriptor.vsn) state = await this.#migrations.run(state, this.#migrations.pathOrThrow(this.descriptor.vsn, toVsn, 'down'), this.#ctx);
    return { vsn: toVsn, bytes: encodeServiceState({ '~keyed': 'rest', state }, this.#service, 'at snapshot', 'suspend') };
  }

  async migrate(request: ControlRequests['migrate']['request']): Promise<ControlRequests['migrate']['response']> {
    this.#expectPhase('migrate', 'loaded');
    const handed = request.handoff
      ? await receiveHandOff({
          port: request.handoff,
          service: this.#service,
          release: this.#release,
          store: () => this.#keyedStore('at pre-copy'),
          upEntryFrom: (vsn) => (vsn === this.descriptor.vsn ? null : this.#migrations.entryMigration(this.#migrations.pathOrThrow(vsn, this.descriptor.vsn, 'up'))),
        })
      : { snapshot: request.snapshot, precopied: false, entryBytes: 0 };
    const { snapshot, precopied } = handed;
    const receivedAt = preciseNow();
    const decoded = decodeServiceState(snapshot.bytes, this.#service, 'at migrate');
    const path = snapshot.vsn === this.descriptor.vsn ? [] : this.#migrations.pathOrThrow(snapshot.vsn, this.descriptor.vsn, 'up');
    if (precopied) {
      // The store arrived in rounds and each entry was migrated as it came: only the small state is left.
      if (!isKeyedRest(decoded)) throw theseusError('E_STATE_UNREADABLE', this.#service, 'at migrate', 'a pre-copied snapshot did not hold the small state of a keyed service');
      this.#state = path.length > 0 ? await this.#migrations.run(decoded.state, path, this.#ctx) : decoded.state;
    } else {
      // An upgrade: the up migration runs here, in the new code.
      this.#adoptWhole(path.length > 0 ? await this.#migrateWhole(decoded, path) : decoded);
    }
    // A pre-copied store's bytes never were one snapshot: the whole is encoded here for durability only.
    const adoptedBytes = () => (snapshot.vsn === this.descriptor.vsn && !precopied ? snapshot : { vsn: this.descriptor.vsn, bytes: encodeServiceState(this.#wholeState(), this.#service, 'after migrate') });
    this.#durable?.adopted(adoptedBytes());
    this.#transition('migrated');
    const answer = { stateBytes: snapshot.bytes.byteLength + handed.entryBytes, receivedAt, adoptedAt: preciseNow() };
    // After a pre-copy there is no whole snapshot to hand the kernel: the retiring old worker gives it.
    if (!request.handoff || precopied) return answer;
    // The kernel keeps the snapshot for a restart: these very bytes go to it (decoding only read
    // them), unless reply durability holds on to them as the state a failed write puts back.
    return { ...answer, snapshot: this.#durable ? { vsn: snapshot.vsn, bytes: snapshot.bytes.slice() } : snapshot };
  }

  // -------------------------------------------------------------------------------------------
  // Pre-copy of a keyed store, in the old worker while it serves.

  async precopy({ handoff, snapshotVsn, maxRounds, smallEnough }: ControlRequests['precopy']['request']): Promise<ControlRequests['precopy']['response']> {
    this.#expectPhase('precopy', 'serving');
    const store = this.#keyedStore('at pre-copy');
    this.#endPrecopy();
    const copy = new StoreCopy({
      service: this.#service,
      store,
      port: handoff,
      vsn: snapshotVsn,
      // On a downgrade the entries go down in this (newer) code, as the whole state would.
      migrateEntry: snapshotVsn === this.descriptor.vsn ? null : this.#migrations.entryMigration(this.#migrations.pathOrThrow(this.descriptor.vsn, snapshotVsn, 'down')),
      // The new worker ended (a roll-back): stop copying, and stop remembering written keys.
      onClosed: () => {
        if (this.#precopy === copy) this.#endPrecopy();
      },
    });
    this.#precopy = copy;
    return copy.run({ maxRounds, smallEnough });
  }

  #endPrecopy(): void {
    const copy = this.#precopy;
    if (copy === null) return;
    this.#precopy = null;
    copy.end();
    if (this.#phase === 'serving') this.#payCheckpointOwed();
  }

  /** A checkpoint skipped during a copy that did not end in a swap (a roll-back): ask for it now. */
  #payCheckpointOwed(): void {
    if (!this.#checkpointOwed) return;
    this.#checkpointOwed = false;
    this.#onCheckpointDue();
  }

  #keyedStore(where: string): TrackedStore {
    // The kernel copies stores only between keyed workers (E_KEYED_CHANGED refuses the rest).
    if (this.#store === null) throw theseusError('E_INTERNAL', `${this.#service} got a keyed store's copy ${where}, but it is not keyed`);
    return this.#store;
  }

  // -------------------------------------------------------------------------------------------
  // The whole state: the small one, and the keyed store when there is one.

  /** What a snapshot, a checkpoint or a durable write holds: the state, with the store's entries when keyed. */
  #wholeState(): unknown {
    if (this.#store === null) return this.#state;
    const whole: KeyedSnapshot = { '~keyed': 1, state: this.#state, entries: this.#store.map };
    return whole;
  }

  #adoptWhole(value: unknown): void {
    if (this.#store === null) {
      if (isKeyedSnapshot(value)) throw theseusError('E_CHECKPOINT_INCOMPATIBLE', this.#service, `it holds a keyed store (the code that wrote it said keyed: true), and ${this.#service}@${this.#release} is not keyed`);
      this.#state = value;
      return;
    }
    if (!isKeyedSnapshot(value)) throw theseusError('E_CHECKPOINT_INCOMPATIBLE', this.#service, `${this.#service}@${this.#release} is keyed (keyed: true), and the state holds no keyed store: the code that wrote it was not keyed`);
    this.#state = value.state;
    this.#store.replace(value.entries);
  }

  /** Runs `path` on a whole state: the state's own migrations, and each entry's when keyed. */
  async #migrateWhole(value: unknown, path: MigrationStep[]): Promise<unknown> {
    if (!isKeyedSnapshot(value)) return this.#migrations.run(value, path, this.#ctx);
    const state = await this.#migrations.run(value.state, path, this.#ctx);
    const migrateEntry = this.#migrations.entryMigration(path);
    let entries = value.entries;
    if (migrateEntry) {
      entries = new Map();
      for (const [key, entry] of value.entries) entries.set(key, migrateEntry(entry, key));
    }
    const whole: KeyedSnapshot = { '~keyed': 1, state, entries };
    return whole;
  }

  switchIn({ ports }: ControlRequests['switch']['request']): ControlRequests['switch']['response'] {
    const receivedAt = preciseNow();
    this.#expectPhase('switch', 'migrated');
    this.#channels.adoptOutbound(ports.outbound);
    // The pause ends when this code can start a handler: stamped before the carried messages
    // start running, which #serve does at once.
    const servingAt = preciseNow();
    this.#durable?.serving();
    this.#serve(ports);
    return { receivedAt, servingAt };
  }

  attach({ link }: ControlRequests['attach']['request']): ControlRequests['attach']['response'] {
    this.#channels.add([link]);
    if (this.#phase === 'serving') this.#channels.listen(link.port);
    return {};
  }

  rewire({ service, link }: ControlRequests['rewire']['request']): ControlRequests['rewire']['response'] {
    this.#channels.rewire(service, link);
    return {};
  }

  peerDown({ service, reason }: ControlRequests['peer-down']['request']): ControlRequests['peer-down']['response'] {
    this.#channels.peerDown(service, reason);
    return {};
  }

  peer({ service, methods }: ControlRequests['peer']['request']): ControlRequests['peer']['response'] {
    this.#channels.peerMethods(service, methods);
    return {};
  }

  /** The `check-args` op: the check a call or cast of `method` gets, without running it. */
  checkArgs({ method, args }: ControlRequests['check-args']['request']): ControlRequests['check-args']['response'] {
    const check = this.#argsChecks.get(method);
    if (check !== undefined && !check.accepts(args)) throw argsRefused(this.#service, method, check, args);
    return {};
  }

  checkpoint(): ControlRequests['checkpoint']['response'] {
    if (this.#phase !== 'draining') this.#expectPhase('checkpoint', 'serving');
    // A pre-copy is under way: a whole snapshot now would cost as much as the copy itself, and
    // the swap takes a checkpoint as soon as it is through (or the next one comes if it rolls back).
    if (this.#precopy !== null) {
      // Owed, not forgotten: asked for again once the copy ends, if this worker goes on serving.
      this.#checkpointOwed = true;
      this.#changesSinceCheckpoint = 0;
      return {};
    }
    // Between two messages the state is whole: handlers never mutate it, they return the next one.
    assertPlainState(this.#state, this.#service, 'at checkpoint');
    this.#changesSinceCheckpoint = 0;
    return { snapshot: { vsn: this.descriptor.vsn, bytes: encodeServiceState(this.#wholeState(), this.#service, 'at checkpoint') } };
  }

  async convert({ snapshot, toVsn }: ControlRequests['convert']['request']): Promise<ControlRequests['convert']['response']> {
    // Only a worker loaded for this (never started) converts: a serving one's state is its own.
    this.#expectPhase('convert', 'loaded');
    const path = this.#migrations.pathOrThrow(snapshot.vsn, toVsn, 'down');
    const state = await this.#migrateWhole(decodeServiceState(snapshot.bytes, this.#service, 'at convert'), path);
    return { snapshot: { vsn: toVsn, bytes: encodeServiceState(state, this.#service, 'at convert') } };
  }

  async health(): Promise<{ healthy: boolean; reason?: string }> {
    if (!this.#definition.health) return { healthy: true };
    if (this.#phase !== 'serving') return { healthy: true, reason: `not serving (${this.#phase})` };
    try {
      // Outside the mailbox on purpose: a health check must answer even while a handler runs.
      // A context of its own whose prototype is the handlers' one: `store` stays reachable.
      const verdict = await this.#definition.health(Object.create(this.#ctx, { state: { value: this.#state } }) as never);
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

  /** The `metrics` op: a copy of the counters, for the main thread to expose. */
  metrics(): ControlRequests['metrics']['response'] {
    return this.#metrics?.snapshot() ?? null;
  }

  async stop({ runTerminate, reason, drainTimeoutMs, snapshot, snapshotVsn }: ControlRequests['stop']['request']): Promise<ControlRequests['stop']['response']> {
    // Any phase may stop; a stop that is already under way (or done) is a kernel bug.
    if (this.#phase === 'stopped') this.#expectPhase('stop', 'serving');
    const wasServing = this.#phase === 'serving';
    this.#endPrecopy();
    this.#channels.stopListening();
    // A stop, unlike a swap, has no next worker to hand a backlog to: it serves it first.
    if (wasServing && !(await this.#waitIdle(drainTimeoutMs, true)) && this.#durable) {
      // The backlog outlasted the drain; what has run must still reach the disk, from here.
      await this.#waitIdle(drainTimeoutMs, false);
    }
    // The final state, after the drain: what a restart resumes from. In reply durability the
    // worker writes its file itself, and nobody else may while a write of its own could still be
    // under way: `persisted` tells the kernel not to.
    // A suspended worker gives its state when asked too: after a pre-copied swap it is the state the
    // new worker was switched in with, which the kernel has no other whole copy of.
    const final: ControlRequests['stop']['response'] =
      snapshot && (wasServing || this.#phase === 'suspended') && this.#state !== undefined ? await this.#settling(() => this.#finalSnapshot(snapshotVsn ?? this.descriptor.vsn)) : {};
    if (this.#durable) {
      final.persisted = true;
      if (!this.#durable.settled) this.#log.error(`stopped with ${this.#durable.heldCount} replies still waiting for their state to be written`);
    }
    this.#transition('stopped');
    if (runTerminate && this.#definition.terminate && this.#state !== undefined) {
      this.#ctx.state = this.#state;
      await this.#definition.terminate(this.#ctx as never, reason);
    }
    this.#channels.closeAll();
    return final;
  }

  /** How long the thread should wait after `stop` before it ends (see #settledAt). */
  get exitDelayMs(): number {
    return Math.min(5000, Math.max(0, Math.round(this.#settledAt - performance.now())));
  }

  /** Runs an encoding of the state, and notes how long V8 may be busy after it. */
  async #settling<T>(encode: () => Promise<T>): Promise<T> {
    const started = performance.now();
    const result = await encode();
    const now = performance.now();
    this.#settledAt = Math.max(this.#settledAt, now + (now - started));
    return result;
  }

  /** The state at stop, or nothing (and the reason in the log) when it is not plain: the last checkpoint stays. */
  async #finalSnapshot(vsn: string): Promise<{ snapshot?: StateSnapshot }> {
    try {
      assertPlainState(this.#state, this.#service, 'at stop');
      const whole = vsn === this.descriptor.vsn ? this.#wholeState() : await this.#migrateWhole(this.#wholeState(), this.#migrations.pathOrThrow(this.descriptor.vsn, vsn, 'down'));
      return { snapshot: { vsn, bytes: encodeServiceState(whole, this.#service, 'at stop') } };
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
    this.#channels.add(ports.inbound);
    for (const [index, frame] of ports.queued ?? []) this.#mailbox.push(Channels.portAt(ports.inbound, index), frame);
    this.#transition('serving');
    this.#channels.listenAll();
    this.#pump();
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
    if (this.#metrics) this.#messageStartedAt = performance.now();
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
    // Refused like an unknown method: before the call counts as started, and before any state is read.
    const check = this.#argsChecks.get(method);
    if (check !== undefined && !check.accepts(frame[3])) {
      this.#fail(port, frame, argsRefused(this.#service, method, check, frame[3]));
      return;
    }
    // From here the call counts as started: if this thread dies, the caller rejects it rather than
    // sending it again (see ServiceClient).
    const taken = this.#channels.takenCell(port);
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
    if (kind !== FRAME_CALL) {
      this.#castsServed++;
      const cast = readCastResult(this.#service, method, result);
      if ('error' in cast) this.#fail(port, frame, cast.error);
      else if (cast.state === undefined || this.#stateAcceptable(port, frame, cast.state)) {
        this.#metrics?.cast(true);
        if (cast.state !== undefined) this.#changeState(cast.state);
      }
      return;
    }
    const call = readCallResult(this.#service, method, result);
    if ('error' in call) {
      this.#fail(port, frame, call.error);
      return;
    }
    const { reply, state } = call;
    if (state !== undefined && !this.#stateAcceptable(port, frame, state)) return;
    if (this.#durable || port === null) {
      // The reply leaves later (or never): check now that it can, while the state can still be
      // left as it was.
      const problem = replyProblem(reply);
      if (problem !== null) {
        this.#fail(port, frame, theseusError('E_REPLY_NOT_CLONEABLE', this.#service, method, problem));
        return;
      }
    } else {
      try {
        port.postMessage([id, REPLY_OK, reply]);
      } catch (error) {
        // The state is left as it was: the caller never saw this call succeed.
        this.#fail(port, frame, theseusError('E_REPLY_NOT_CLONEABLE', this.#service, method, explainCloneFailure(reply, 'reply', error)));
        return;
      }
    }
    this.#callsServed++;
    this.#metrics?.call(true, performance.now() - this.#messageStartedAt);
    if (state !== undefined) this.#changeState(state);
    if (this.#durable || port === null) this.#reply(port, [id, REPLY_OK, reply]);
  }

  /**
   * The calls of a batch, one after another, as if each had come in its own message (batch.ts).
   * While one of them awaits, the worker is busy, as for any async handler.
   */
  #handleBatch(port: ReplyPort, frame: RequestFrame): void {
    runBatch(
      {
        service: this.#service,
        calls: this.#calls,
        casts: this.#casts,
        sockets: this.#sockets,
        argsChecks: this.#argsChecks,
        context: () => {
          this.#ctx.state = this.#state;
          return this.#ctx;
        },
        checkEveryChange: this.descriptor.stateCheck === 'every-change',
        served: (state) => {
          this.#callsServed++;
          if (state !== undefined) this.#changeState(state);
        },
        reply: (replyTo, replyFrame) => {
          if (this.#metrics) this.#countBatch(replyFrame);
          // In reply durability each reply was checked as it was settled, so the whole can go later.
          if (this.#durable) this.#reply(replyTo, replyFrame);
          else {
            try {
              replyTo?.postMessage(replyFrame);
            } catch (error) {
              replyTo?.postMessage([replyFrame[0], REPLY_ERROR, serializeError(error, 'E_REPLY_NOT_CLONEABLE')]);
            }
          }
        },
        busy: (busy) => {
          this.#busy = busy;
          if (!busy) this.#pump();
        },
      },
      port,
      frame,
      this.#channels.takenCell(port),
    );
  }

  /** Every call of a batch is answered with the batch: each counts with the batch's time. */
  #countBatch(replyFrame: ReplyFrame): void {
    const results = replyFrame[2] as BatchedResult[];
    let failed = 0;
    for (let i = 0; i < results.length; i++) if (results[i]![0] !== REPLY_OK) failed++;
    this.#metrics!.calls(results.length - failed, failed, performance.now() - this.#messageStartedAt);
  }

  #changeState(state: unknown): void {
    // Handing back the state it was given is no change: nothing to write or to checkpoint.
    if (state === this.#state) return;
    this.#state = state;
    this.#counted();
  }

  /** A write to the keyed store: a change like a new state, for durability and checkpoints. */
  #storeWritten(): void {
    // Only while it can be served: init fills the store before anything is counted, and a
    // pre-copy's own writes into a new worker go through apply(), which does not come here.
    if (this.#phase === 'loaded' || this.#phase === 'migrated') return;
    this.#counted();
  }

  #counted(): void {
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
    if (this.#metrics) {
      if (kind === FRAME_CALL) this.#metrics.call(false, performance.now() - this.#messageStartedAt);
      else this.#metrics.cast(false);
    }
    if (kind === FRAME_CALL) {
      this.#reply(port, [id, REPLY_ERROR, serialized]);
      return;
    }
    // A cast has nobody to answer; the log is where its failure shows.
    this.#log.error(`cast ${method}() failed: ${serialized.message}`, { code: serialized.code });
  }

  // -------------------------------------------------------------------------------------------
  // Draining and ports.

  /**
   * No handler runs, no outgoing call waits, every reply is out (in reply durability, after its
   * state was written), and, when `withBacklog`, nothing waits in the mailbox either.
   */
  #isIdle(withBacklog: boolean): boolean {
    return !this.#busy && (!withBacklog || this.#mailbox.size === 0) && this.#channels.outboundPending() === 0 && (this.#durable?.settled ?? true);
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

  // -------------------------------------------------------------------------------------------
  // State and migrations.

  #transition(next: Phase): void {
    if (next === this.#phase) return;
    this.#phase = checkTransition(allowedTransitions, `${this.#service}@${this.#release}`, this.#phase, next);
  }

  #expectPhase(op: string, expected: Phase): void {
    if (this.#phase !== expected) {
      throw theseusError('E_BAD_PHASE', `${this.#service}@${this.#release} cannot '${op}' while ${this.#phase} (expected ${expected})`);
    }
  }
}

