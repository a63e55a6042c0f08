// The whole wire protocol between the kernel's main thread and a service worker, and between a
// caller and a service. Nothing else defines message shapes.
//
// Two channels:
//  1. Control: kernel <-> worker over the worker's parentPort. Typed request/response pairs keyed
//     by `rid`, plus one-way notices (`log`). Cold path: clarity over speed.
//  2. Calls: caller <-> service over a dedicated MessagePort per caller. Hot path: frames are
//     small arrays, because structured clone of an array of primitives is cheaper than of an object.

import { MessageChannel, type MessagePort } from 'node:worker_threads';
import type { SerializedError } from './errors.ts';
import type { CallMetricsSnapshot } from './call-metrics.ts';
import type { MigrationEdge } from './migrations.ts';

/** Bumped whenever a frame or control message changes shape. Workers refuse a mismatched kernel. */
export const PROTOCOL_VERSION = 1;

// ---------------------------------------------------------------------------------------------
// Calls (caller <-> service)

export const FRAME_CALL = 0;
export const FRAME_CAST = 1;
/**
 * Several calls in one message: [FRAME_BATCH, id, '', [[method, args?], ...]], answered by one
 * reply [id, REPLY_OK, [[status, value], ...]] in the same order. The service runs them one after
 * another, exactly as if they had come one by one; the batch only saves the per-message cost of a
 * MessagePort, which dominates small calls (the HTTP front door batches what arrives in one turn).
 */
export const FRAME_BATCH = 2;
/**
 * The method slot of a batch frame says how its calls are encoded: '' for ordinary calls
 * ([method, args]), BATCH_HTTP for the front door's ([handler, WireHttpRequest], each given to the
 * handler as one HttpRequest, each reply answered as a ready-to-write WireHttpReply; see
 * http-codec.ts).
 */
export const BATCH_HTTP = 'http';
/**
 * The WebSocket front door's batches: each call is [event, args] for the service's socket handler
 * of that name (open, message, close, restarted), and each outcome comes back as a
 * WireSocketOutcome (socket-codec.ts): what to send, and which connections to close.
 */
export const BATCH_WS = 'ws';
/** How the calls of a batch frame are encoded (see BATCH_HTTP and BATCH_WS). */
export type BatchEncoding = '' | typeof BATCH_HTTP | typeof BATCH_WS;
export const REPLY_OK = 0;
export const REPLY_ERROR = 1;

/**
 * caller -> service: [FRAME_CALL, id, method, args?] or [FRAME_CAST, 0, method, args?]. A call
 * without arguments leaves `args` out rather than sending an empty array.
 */
export type RequestFrame = [kind: typeof FRAME_CALL | typeof FRAME_CAST | typeof FRAME_BATCH, id: number, method: string, args?: unknown[]];
/** One call inside a batch, and its outcome. */
export type BatchedCall = [method: string, args?: unknown[]];
export type BatchedResult = [status: typeof REPLY_OK, value: unknown] | [status: typeof REPLY_ERROR, error: SerializedError];
/** service -> caller: [id, REPLY_OK, value] or [id, REPLY_ERROR, error] */
export type ReplyFrame = [id: number, status: typeof REPLY_OK, value: unknown] | [id: number, status: typeof REPLY_ERROR, error: SerializedError];

/** Which names are calls and which are casts, so a client knows whether to wait for a reply. */
export interface MethodTable {
  calls: readonly string[];
  casts: readonly string[];
}

// ---------------------------------------------------------------------------------------------
// Control (kernel <-> worker)

/** What a loaded service module declares; reported by the worker before anything else happens. */
export interface ServiceDescriptor extends MethodTable {
  vsn: string;
  uses: readonly string[];
  migrations: readonly MigrationEdge[];
  hasTerminate: boolean;
  /** Whether it defines health(), which the kernel polls during an upgrade's probation. */
  hasHealth: boolean;
  stateCheck: 'transitions' | 'every-change';
  /** `keyed: true` in the definition: the service has a keyed store, which a swap pre-copies. Absent otherwise. */
  keyed?: true;
  /**
   * The arguments each call or cast declares, in order, by method name; absent when none declares
   * any. A method not listed takes any arguments, unchecked.
   */
  args?: Readonly<Record<string, readonly ArgumentSchema[]>>;
}

/**
 * One declared argument of a call or cast, as JSON Schema: the service's TypeBox schema without
 * TypeBox's own symbol keys. The worker checks arguments with the compiled schema itself; this
 * form travels (descriptor, manifest, the control socket's `describe`) for people to read.
 */
export type ArgumentSchema = { readonly [keyword: string]: unknown };

/** Whether two descriptors say the same thing (key order aside). */
export function sameDescriptor(a: ServiceDescriptor, b: ServiceDescriptor): boolean {
  const canonical = (d: ServiceDescriptor) =>
    JSON.stringify([d.vsn, d.calls, d.casts, d.uses, d.migrations.map((m) => [m.from, m.to, m.hasDown]), d.hasTerminate, d.hasHealth, d.stateCheck, canonicalJson(d.args ?? {}), d.keyed === true]);
  return canonical(a) === canonical(b);
}

/**
 * Whether two sources give a service the same settings besides its code: its `ctx.config`, its
 * static files and its durability. A release that changes only these is still swapped in (with
 * the same code), so it takes effect at once rather than at the next restart. Without a digest of
 * the static files (a source given in code), their folder is compared instead.
 */
export function sameSettings(a: ServiceSource, b: ServiceSource): boolean {
  const sameStatic = a.staticDigest !== undefined || b.staticDigest !== undefined ? a.staticDigest === b.staticDigest : (a.staticDir ?? null) === (b.staticDir ?? null);
  return canonicalJson(a.config ?? {}) === canonicalJson(b.config ?? {}) && sameStatic && (a.durability ?? 'periodic') === (b.durability ?? 'periodic');
}

/** JSON with object keys sorted, so equal data gives equal text whatever the key order. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, inner: unknown) =>
    inner !== null && typeof inner === 'object' && !Array.isArray(inner)
      ? Object.fromEntries(Object.entries(inner as Record<string, unknown>).sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0)))
      : inner,
  );
}

/** What every thread that runs a service's code is told when it starts. */
export interface ServiceBootData {
  protocol: number;
  service: string;
  release: string;
  /** file: URL of the service's bundled module. */
  moduleUrl: string;
  /** The release's copy of the service's static files (ctx.staticDir), if it has any. */
  staticDir: string | null;
  /** The release's runtime configuration (ctx.config). */
  config: Record<string, unknown>;
}

/** Passed as workerData when the kernel creates a service worker. */
export interface WorkerBootData extends ServiceBootData {
  /** Ask for a checkpoint after this many state changes (0: never). */
  checkpointEveryChanges: number;
  /**
   * Reply durability: the checkpoint file this worker writes itself, and no reply (nor any change
   * a later reply could reveal) leaves the worker before the state that produced it is in that
   * file. Null: the kernel takes checkpoints (durability 'periodic').
   */
  durableStateDir: string | null;
}

/**
 * The workerData of a warm spare: the worker runtime boots with no service and waits for a
 * SpareBoot message, whose `boot` it then uses exactly as a fresh worker uses its workerData.
 */
export interface SpareBootData {
  protocol: number;
  spare: true;
}

/** Kernel -> spare: the service this thread now loads and runs. Its first and only such message. */
export interface SpareBoot {
  kind: 'boot';
  boot: WorkerBootData;
}

/**
 * How much of a service's state a kill -9 (or a power cut) can lose.
 *  - 'reply': nothing a caller was told. A reply, and a cast's effect on later replies, leave the
 *    worker only once the state that produced them is on disk; one write covers every call that
 *    finished while the previous write was under way (group commit).
 *  - 'periodic': the kernel checkpoints every `checkpointIntervalMs` and every
 *    `checkpointEveryChanges` state changes (0 turns either off), so at most that much is lost:
 *    an interval mode, a changes mode, or both (the default).
 */
export type Durability = 'reply' | 'periodic';

/** Where a service's code comes from, for Kernel.start and for a swap's target. */
export interface ServiceSource {
  /** A TypeScript or JavaScript entry, bundled with esbuild before it runs (development). */
  entry?: string;
  /** A prebuilt bundle from a release; its sha256 is checked before a worker loads it. */
  bundle?: { file: string; sha256: string };
  /** What the release manifest says the code declares; checked against the loaded code. */
  descriptor?: ServiceDescriptor;
  staticDir?: string;
  config?: Record<string, unknown>;
  /** Declares the service stateless: it runs on a pool of `size` worker threads (piscina). */
  pool?: { size: number };
  /** What a kill -9 can lose; the kernel's checkpoint options when absent. */
  durability?: Durability;
  /**
   * A digest of the service's static files (ctx.staticDir): two releases with the same code and
   * config but other static files are still a change to swap in.
   */
  staticDigest?: string;
}

/**
 * One caller's channel, as the service holds it: the port, and a shared cell in which the service
 * stores the id of each call it starts. If the service's worker dies, the caller reads the cell:
 * calls up to it were in flight and are rejected, calls after it never started and are sent again
 * to the restarted worker. One Atomics.store per call buys "nothing queued is lost".
 */
export interface InboundLink {
  port: MessagePort;
  taken: Int32Array;
}

/** The caller's side of the same channel, for a service calling another. */
export interface OutboundLink {
  port: MessagePort;
  taken: Int32Array;
  methods: MethodTable;
}

/** A new caller channel: the caller keeps `caller`, the service gets `service`. */
export function createLink(methods: MethodTable): { caller: OutboundLink; service: InboundLink } {
  const { port1, port2 } = new MessageChannel();
  // [0]: the id of the last frame the service took; [1]: for a batch, how many of its calls had
  // started. A crash fails what had started and sends the rest again.
  const taken = new Int32Array(new SharedArrayBuffer(8));
  return { caller: { port: port1, taken, methods }, service: { port: port2, taken } };
}

/**
 * A message a worker had taken from a caller's port but not started when it was suspended:
 * the index of that caller in `PortSet.inbound` (-1 when the caller has gone away, so nobody
 * waits for its reply, though its effect on the state still counts), and the frame.
 */
export type QueuedFrame = [inbound: number, frame: RequestFrame];

/** The ports a running service owns: the service ends callers write to, and its own client ends. */
export interface PortSet {
  /** Service ends of callers' channels; the worker listens on each. */
  inbound: InboundLink[];
  /** Client ends to the services in `uses`, by name, with the peer's method table. */
  outbound: Record<string, OutboundLink>;
  /**
   * Messages taken from `inbound` but not started, in the order they were taken. They run before
   * anything still waiting inside the ports, in whichever worker gets the ports next: the new one
   * on a switch, the old one on a roll-back. A suspend waits for the running handler only, never
   * for this backlog, so a swap under overload pauses for one handler, not for all of them.
   */
  queued?: QueuedFrame[];
}

/** A serialized state: v8.serialize bytes (transferred, not copied) plus the vsn they hold. */
export interface StateSnapshot {
  vsn: string;
  bytes: Uint8Array;
}

/**
 * What travels on a swap's hand-off channel, from the old worker to the new one, in order:
 * for a keyed service, chunks of its store (each encoded as an array of [key, value] or [key] for
 * a deleted key, at vsn `vsn`, each acknowledged by `applied`), then the snapshot. After chunks, the snapshot holds only the small
 * state (`precopied`); without them, the whole of it.
 */
export type HandoffMessage =
  | { kind: 'entries'; vsn: string; bytes: Uint8Array }
  | { kind: 'snapshot'; snapshot: StateSnapshot; precopied?: true }
  /** The other way, new to old: one chunk of entries is in the store (the old worker sends only a few ahead). */
  | { kind: 'applied' };

export interface ControlRequests {
  /** Build the first state with init() and start serving. */
  start: { request: { ports: PortSet }; response: { stateBytes: number } };
  /**
   * Stop taking messages, finish in-flight handlers and outgoing calls, serialize the state at
   * `snapshotVsn` (running down migrations in this newer code on a downgrade), and hand the ports
   * over. One round trip instead of two, because it sits inside the swap's pause.
   */
  suspend: {
    /**
     * `handoff`: the old worker's end of a channel to the new worker (the swap's direct hand-off).
     * The snapshot goes there, transferred, instead of into the response; the ports and the
     * backlog still come back to the kernel, which keeps them until the switch. After a
     * `precopy`, `handoff` is absent: the channel that copy used carries the rest.
     */
    request: { drainTimeoutMs: number; snapshotVsn: string; handoff?: MessagePort };
    response: {
      ports: PortSet;
      /** Absent when it went to the new worker over `handoff`. */
      snapshot?: StateSnapshot;
      callsServed: number;
      castsServed: number;
      /** When the worker stopped starting handlers (epoch ms, stamped in its thread): the pause begins. */
      stoppedAt: number;
      /** When its running handler (and its outgoing calls, and any state write) had finished. */
      drainedAt: number;
      /** When the snapshot was serialized, just before the answer left (epoch ms, its thread). */
      snapshotAt: number;
    };
  };
  /**
   * Keyed services, while still serving: copy the store over `handoff` to the new worker, in
   * rounds (all entries, then the keys written during the round before), until a round is at
   * most `smallEnough` keys or `maxRounds` were sent. The suspend that follows sends the keys
   * written since, then the small state, on the same channel. Closing the channel (the new
   * worker ended: a roll-back) stops the copy; a resume stops it too.
   */
  precopy: {
    request: { handoff: MessagePort; snapshotVsn: string; maxRounds: number; smallEnough: number };
    response: { rounds: number; entries: number; bytes: number; lastRound: number };
  };
  /** Take the ports back and serve again with the untouched state (abort path). */
  resume: { request: { ports: PortSet | null }; response: Record<string, never> };
  /** Adopt a snapshot, running up migrations (in this new code) to the own vsn. Not serving yet. */
  migrate: {
    /**
     * The snapshot itself, or `handoff`: the new worker's end of a channel the old worker sends it
     * on as it suspends. Sent before the pause, this request is answered once that snapshot has
     * arrived and been adopted.
     */
    request: { snapshot: StateSnapshot; handoff?: never } | { snapshot?: never; handoff: MessagePort };
    /**
     * When the snapshot arrived and when the state was adopted (epoch ms, stamped in its thread).
     * After a hand-off, `snapshot` is the one that arrived, for the kernel to keep for a restart.
     */
    response: { stateBytes: number; receivedAt: number; adoptedAt: number; snapshot?: StateSnapshot };
  };
  /**
   * Build the first state with init(), with the clients of the services it uses, but do not serve
   * yet: a service added by a swap opens to its callers only at the switch.
   */
  init: { request: { ports: PortSet }; response: { stateBytes: number } };
  /** Take the ports and start serving the migrated (or initialised) state. */
  switch: { request: { ports: PortSet }; response: { receivedAt: number; servingAt: number } };
  /** A new caller's service end. */
  attach: { request: { link: InboundLink }; response: Record<string, never> };
  /** A service this one uses was restarted: its client gets the new channel (and resends what never started). */
  rewire: { request: { service: string; link: OutboundLink }; response: Record<string, never> };
  /** A service this one uses failed for good: its client rejects everything. */
  'peer-down': { request: { service: string; reason: string }; response: Record<string, never> };
  /** A service this one uses has new code: update the method table of its client. */
  peer: { request: { service: string; methods: MethodTable }; response: Record<string, never> };
  /** Report counters. */
  stats: { request: Record<string, never>; response: WorkerStats };
  /** Calls and casts by outcome and call latency, counted in the worker (null when turned off). */
  metrics: { request: Record<string, never>; response: CallMetricsSnapshot | null };
  /** Serialize the current state, between two messages, without pausing the service; no snapshot while a keyed store is being pre-copied. */
  checkpoint: { request: Record<string, never>; response: { snapshot?: StateSnapshot } };
  /** In a loaded worker: migrate a snapshot down to `toVsn` in this (newer) code, and return it. */
  convert: { request: { snapshot: StateSnapshot; toVsn: string }; response: { snapshot: StateSnapshot } };
  /** Run the service's health() against its current state. */
  health: { request: Record<string, never>; response: { healthy: boolean; reason?: string } };
  /**
   * Check arguments against what `method` declares, without running it: rejects with
   * E_ARGS_INVALID. For a cast sent over the control socket, whose caller waits for no reply.
   */
  'check-args': { request: { method: string; args: unknown[] }; response: Record<string, never> };
  /** End for good: run terminate() when asked (kernel stop), then let the thread exit. */
  stop: {
    /**
     * `snapshotVsn`: the final snapshot at this vsn, migrated down in this code when it differs
     * (the state a pre-copied downgrade switched in with, kept for a restart).
     */
    request: { runTerminate: boolean; reason: string; drainTimeoutMs: number; snapshot: boolean; snapshotVsn?: string };
    /**
     * The final state, taken after the drain, when asked for; `persisted` when the worker has
     * already written it to its own checkpoint file (reply durability).
     */
    response: { snapshot?: StateSnapshot; persisted?: boolean };
  };
}

export type ControlOp = keyof ControlRequests;

export interface WorkerStats {
  callsServed: number;
  castsServed: number;
  inFlight: number;
  queued: number;
  heapUsed: number;
  /** Reply durability: state writes (each one fsync of the file and one of its folder) so far. */
  durableWrites: number;
}

export type ControlRequestMessage<Op extends ControlOp = ControlOp> = {
  kind: 'request';
  rid: number;
  op: Op;
} & ControlRequests[Op]['request'];

export type ControlResponseMessage =
  | { kind: 'response'; rid: number; ok: true; value: unknown }
  | { kind: 'response'; rid: number; ok: false; error: SerializedError };

export interface LogRecord {
  level: 'debug' | 'info' | 'warn' | 'error';
  service: string;
  release: string;
  message: string;
  data?: unknown;
  /** Epoch ms. */
  time: number;
}

/** Worker -> kernel messages that are not responses. */
export type WorkerNotice =
  | { kind: 'loaded'; descriptor: ServiceDescriptor }
  | { kind: 'load-failed'; error: SerializedError }
  | { kind: 'log'; record: LogRecord }
  /** The state changed `checkpointEveryChanges` times since the last checkpoint. */
  | { kind: 'checkpoint-due' }
  /** A warm spare has booted the runtime and waits for its SpareBoot. */
  | { kind: 'spare-ready' };

export type WorkerToKernel = ControlResponseMessage | WorkerNotice;

/** Every MessagePort inside a PortSet, for the transfer list. */
export function portsOf(ports: PortSet): MessagePort[] {
  return [...ports.inbound.map((link) => link.port), ...Object.values(ports.outbound).map((entry) => entry.port)];
}

// ---------------------------------------------------------------------------------------------
// HTTP front door (kernel main thread -> a service's HTTP handler, which is an ordinary call)

/** What a route's handler receives as its one argument. */
export interface HttpRequest {
  method: string;
  /** The path without the query string, e.g. "/next". */
  path: string;
  /** Query parameters; a name given more than once maps to an array. */
  query: Record<string, string | string[]>;
  /** Header names in lower case, as Node's http module gives them. */
  headers: Record<string, string | string[] | undefined>;
  /**
   * The body: a string for text, JSON, XML and form bodies; bytes for anything else; null when
   * the request has none. Bodies over the release's `http.maxBodyBytes` never reach the handler.
   */
  body: string | Uint8Array | null;
}

/**
 * What a route's handler replies. `status` defaults to 200. A string body is sent as text, bytes
 * as application/octet-stream, anything else as JSON; a content-type header overrides that.
 */
export interface HttpReply {
  status?: number;
  headers?: Record<string, string | number | readonly string[]>;
  body?: unknown;
}

// ---------------------------------------------------------------------------------------------
// WebSocket front door (kernel main thread -> a service's socket handlers; see socket-codec.ts)

/** A connection's id: plain data, so a service's state can keep it (rooms, members) and migrate it. */
export type ConnectionId = string;

/** The upgrade request a connection was opened with, as the `open` handler receives it. */
export interface SocketRequest {
  /** The path without the query string, e.g. "/chat". */
  path: string;
  /** Query parameters; a name given more than once maps to an array. */
  query: Record<string, string | string[]>;
  /** Header names in lower case. */
  headers: Record<string, string | string[] | undefined>;
}

/** An open connection, as the `restarted` handler receives each one. */
export interface SocketInfo extends SocketRequest {
  id: ConnectionId;
}

/** One frame to send: to this connection (no `to`), to one id, to a list of ids, or to every connection of the service ('all'). */
export interface SocketSend {
  data: string | Uint8Array;
  to?: ConnectionId | readonly ConnectionId[] | 'all';
}

/** A connection to close: this one (no `id`) or another; code 1000 (the default) or 3000-4999. */
export interface SocketClose {
  id?: ConnectionId;
  code?: number;
  reason?: string;
}

/** What a socket handler returns (or nothing): the next state, the frames to send, the connections to close. */
export interface SocketResult<S> {
  state?: S;
  send?: readonly SocketSend[];
  close?: readonly SocketClose[];
}

// ---------------------------------------------------------------------------------------------
// Pooled services (kernel -> one thread of a service's piscina pool, as piscina tasks)

/**
 * On a pool thread's gateway: [service, request frame] from the thread; the main thread answers
 * each call with a reply frame on the same channel, as a worker would.
 */
export type GatewayFrame = [service: string, frame: RequestFrame];

/** Passed as piscina's workerData to every thread of a pool. */
export type PoolBootData = ServiceBootData;

/**
 * One piscina task. `warm` loads nothing new: it waits for the thread's module to have loaded and
 * reports what it declares, so a pool serves only once every thread has its code. `check-args` is
 * the control op of the same name (ControlRequests), for a pool.
 */
export type PoolTask =
  // `gateway`: the thread's channel to the main thread, for calls to the stateful services the
  // pooled service uses; `casts` names their casts, so its clients know which answer nothing.
  | { op: 'warm'; gateway?: MessagePort; casts?: Record<string, string[]> }
  // `http`: the one argument is a request the HTTP front door built.
  | { op: 'call' | 'cast'; method: string; args?: unknown[]; http?: true }
  | { op: 'check-args'; method: string; args: unknown[] };

/**
 * A task's answer. Errors come back as values (structured clone keeps no `code` on an Error), and
 * the log lines the handler wrote travel with the answer for the kernel to emit.
 */
export type PoolTaskResult = ({ ok: true; reply: unknown } | { ok: false; error: SerializedError }) & { logs?: LogRecord[] };

/** The reply of a `warm` task. */
export interface PoolWarmReply {
  descriptor: ServiceDescriptor;
  threadId: number;
}
