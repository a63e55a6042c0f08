// The service authoring API: what a service module imports (`import { defineService } from 'theseus/service'`).
// This code is bundled into each service and runs inside the service's worker thread.
//
// A service is a GenServer-like module: explicit plain-data state owned by the kernel, calls that
// reply, casts that do not, an optional terminate, and versioned migrations between state shapes.
// Its calls and casts may declare their arguments as TypeBox schemas (`args`): the handlers'
// parameter types follow from them, and the kernel refuses arguments that do not match.

import { Type, type Static, type TOptional, type TSchema } from '@sinclair/typebox';
import type { ConnectionId, SocketInfo, SocketRequest, SocketResult } from './common/protocol.ts';

export interface ServiceLogger {
  debug(message: string, data?: unknown): void;
  info(message: string, data?: unknown): void;
  warn(message: string, data?: unknown): void;
  error(message: string, data?: unknown): void;
}

/** A typed client for another service, as produced by `ClientOf<typeof definition>`. */
export type AnyClient = Record<string, (...args: never[]) => unknown>;

/** What every handler, init and migration can use besides the state. */
export interface BaseContext {
  /** The service's name in the release. */
  readonly service: string;
  /** The release version whose code is running (e.g. "0.3.0"). */
  readonly release: string;
  /** Log lines carry the service name and release version. */
  readonly log: ServiceLogger;
  /** This release's copy of the service's `static/` folder, or null when it has none. */
  readonly staticDir: string | null;
  /** The release's runtime configuration (`runtimeConfig` in theseus.config.ts). */
  readonly config: Readonly<Record<string, unknown>>;
  /**
   * A typed client for a service listed in `uses`. Calls travel on a direct MessagePort between
   * the two workers, never through the main thread.
   */
  client<Api extends object = AnyClient>(service: string): Api;
}

export interface ServiceContext<S> extends BaseContext {
  /** The state as it was when this message was taken. Return the next state; do not mutate it. */
  readonly state: S;
  /**
   * The service's keyed state, when it declares `keyed: true`: a Map-like store of plain-data
   * values by string or number key. Unlike `state`, it is changed in place, at once (a handler
   * that throws after a `set` keeps that `set`). A swap copies it to the new worker while the old
   * one still serves, then only the keys changed since, so the pause does not grow with its size.
   */
  readonly store: KeyedStore;
}

/** What init() gets: the base context, and the keyed store to fill when the service is keyed. */
export interface InitContext extends BaseContext {
  readonly store: KeyedStore;
}

/** Keys of a keyed store: strings or numbers (a number and its string are different keys). */
export type StoreKey = string | number;

/**
 * A keyed store (`keyed: true`). Every value must be plain data: `set` refuses one that is not
 * with E_STATE_NOT_CLONEABLE, before anything changes. Values are stored as given; do not mutate
 * a value after setting it (the change would not be tracked): set it again.
 */
export interface KeyedStore<V = unknown> {
  get(key: StoreKey): V | undefined;
  has(key: StoreKey): boolean;
  set(key: StoreKey, value: V): void;
  delete(key: StoreKey): boolean;
  readonly size: number;
  keys(): IterableIterator<StoreKey>;
  entries(): IterableIterator<[StoreKey, V]>;
}

export interface CallResult<S, R> {
  reply: R;
  /** The next state. Omit it to keep the state unchanged. */
  state?: S;
}

export interface CastResult<S> {
  state?: S;
}

type MaybePromise<T> = T | Promise<T>;

// The `never[]`/`any` here let TypeScript infer each handler's own argument types; the public
// client type below recovers them.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type CallHandler<S> = (ctx: ServiceContext<S>, ...args: any[]) => MaybePromise<CallResult<S, unknown>>;
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type CastHandler<S> = (ctx: ServiceContext<S>, ...args: any[]) => MaybePromise<CastResult<S> | void>;

/** The arguments of one call or cast, in order: one TypeBox schema each (`[Type.Integer()]`). */
export type ArgSchemas = readonly TSchema[];

/**
 * The parameter types a list of schemas stands for: `[Type.Integer(), Type.String()]` gives
 * `[number, string]`. Trailing arguments that may be left out (`Type.Optional(...)`, or a schema
 * that accepts undefined) are optional parameters: `[Type.Integer(), Type.Optional(Type.String())]`
 * gives `[number, string?]`. Read from the last argument back, since only a tail can be optional.
 */
export type ArgsFrom<A extends ArgSchemas, Later extends unknown[] = [], LaterAllOptional extends boolean = true> = A extends readonly [
  ...infer Before extends ArgSchemas,
  infer Last extends TSchema,
]
  ? LaterAllOptional extends true
    ? MayBeLeftOut<Last> extends true
      ? ArgsFrom<Before, [Static<Last>?, ...Later], true>
      : ArgsFrom<Before, [Static<Last>, ...Later], false>
    : ArgsFrom<Before, [Static<Last>, ...Later], false>
  : A extends readonly []
    ? Later
    : // Not a tuple (a schema list built as TSchema[]): every argument of the one union type.
      Array<Static<A[number]>>;

type MayBeLeftOut<T extends TSchema> = T extends TOptional<TSchema> ? true : undefined extends Static<T> ? true : false;

/**
 * Handlers of the methods named in `args`, typed from their schemas. Nothing while `args` is
 * unknown (TypeScript types the handlers before it has settled on `args`, and without one).
 */
type CallsTypedBy<S, A> = string extends keyof A
  ? unknown
  : { [M in keyof A]?: A[M] extends ArgSchemas ? (ctx: ServiceContext<S>, ...args: ArgsFrom<A[M]>) => MaybePromise<CallResult<S, unknown>> : never };
type CastsTypedBy<S, A> = string extends keyof A
  ? unknown
  : { [M in keyof A]?: A[M] extends ArgSchemas ? (ctx: ServiceContext<S>, ...args: ArgsFrom<A[M]>) => MaybePromise<CastResult<S> | void> : never };

export interface Migration {
  /** State vsn this migration reads when going up. */
  from: string;
  /** State vsn it produces when going up. */
  to: string;
  /** Runs in the NEW code during an upgrade. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  up(state: any, ctx: BaseContext): unknown;
  /** Runs in this (newer) code during a downgrade, before the state goes to the older code. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  down?(state: any, ctx: BaseContext): unknown;
  /**
   * Keyed services only: migrates one entry of the store, synchronously, in the new code. A swap
   * runs it on each entry as it arrives while the old code still serves, so a big store is
   * migrated outside the pause. Without it, entries keep their value through this step.
   */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  upEntry?(value: any, key: StoreKey): unknown;
  /** Keyed services only: the reverse of upEntry, run in this (newer) code during a downgrade. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  downEntry?(value: any, key: StoreKey): unknown;
}

export interface ServiceDefinition<
  S = unknown,
  Calls extends Record<string, CallHandler<S>> = Record<string, CallHandler<S>>,
  Casts extends Record<string, CastHandler<S>> = Record<string, CastHandler<S>>,
> {
  /** The state version, like OTP's @vsn. Change it when the shape of the state changes. */
  vsn: string;
  /** Services this one calls through `ctx.client(name)`. The kernel wires a direct port to each. */
  uses?: readonly string[];
  /** Builds the first state when the service starts with no state to adopt (and, when keyed, may fill `ctx.store`). */
  init(ctx: InitContext): MaybePromise<S>;
  calls?: Calls;
  casts?: Casts;
  /**
   * The arguments of calls and casts, by method name: one TypeBox schema per argument, in order
   * (`incrementNumber: [Type.Integer({ title: 'delta' })]`). The kernel checks every call and
   * cast of a listed method before its handler runs, whoever sends it (another service, the
   * kernel's client, the console, the HTTP front door), and refuses a mismatch with E_ARGS_INVALID:
   * the handler does not run and the state is untouched. Trailing arguments declared
   * `Type.Optional(...)` (or whose schema accepts undefined) may be left out; more arguments than
   * schemas are refused. A `title` names the
   * argument in errors and in the console's `.help`. Methods not listed are not checked.
   */
  args?: Readonly<Record<string, ArgSchemas>>;
  /** Runs when the service stops for good (kernel stop), not when its code is swapped. */
  terminate?(ctx: ServiceContext<S>, reason: string): MaybePromise<void>;
  migrations?: readonly Migration[];
  /**
   * Optional health check, polled during an upgrade's probation window: return true when healthy,
   * false or a reason when not. An unhealthy new release is reverted, its state carried back down.
   */
  health?(ctx: ServiceContext<S>): MaybePromise<boolean | string>;
  /**
   * When the kernel checks that the state is plain data: 'transitions' (after init, after each
   * migration and at every snapshot) or 'every-change' (also after each handler that changes it,
   * which costs a walk of the state per call).
   */
  stateCheck?: 'transitions' | 'every-change';
  /**
   * `true` gives handlers `ctx.store`, a keyed store (KeyedStore) beside `state`. Use it for a big
   * state made of many independent entries (sessions, accounts, a cache): a swap pre-copies it
   * while the old code serves, and pauses only for the keys changed last. Keep `state` small.
   * A release may not turn it on or off for a running service (E_KEYED_CHANGED).
   */
  keyed?: boolean;
  /**
   * Handlers of the WebSocket connections the release routes to this service (`websockets` in
   * theseus.config.ts). The kernel's main thread owns the sockets; each event reaches the service
   * as one message, in order, like a call, and through a swap like any call. Each handler returns
   * the next state and what to send or close (SocketResult), or nothing.
   */
  sockets?: SocketHandlers<S>;
}

/** A socket handler returns its result, or a promise of it; nothing changes nothing. */
type SocketReturn<S> = MaybePromise<SocketResult<S> | void>;

export interface SocketHandlers<S> {
  /** A client connected. Its id stays the same for as long as the connection lives, through every swap. */
  open?(ctx: ServiceContext<S>, id: ConnectionId, request: SocketRequest): SocketReturn<S>;
  /** A client sent a frame: text as a string, binary as bytes. A handler that throws closes this connection with 1011. */
  message(ctx: ServiceContext<S>, id: ConnectionId, data: string | Uint8Array): SocketReturn<S>;
  /** The connection closed (either side, or a limit): `code` and `reason` as the close frame gave them (1006 when none came). Sends to it are dropped. */
  close?(ctx: ServiceContext<S>, id: ConnectionId, code: number, reason: string): SocketReturn<S>;
  /**
   * The worker crashed and this one took over, from the last state the kernel kept: `open` lists
   * the connections open now (none of them was closed), so the state can be made to match them.
   * Also called once when the kernel starts routing connections to the service, with none open:
   * a state from a checkpoint may still hold ids of connections that died with an earlier kernel.
   */
  restarted?(ctx: ServiceContext<S>, open: readonly SocketInfo[]): SocketReturn<S>;
}

/**
 * Declares a module's default export as a Theseus service; it helps inference and freezes it. The
 * handlers of methods listed in `args` get their parameter types from the schemas.
 */
export function defineService<
  S,
  Calls extends Record<string, CallHandler<S>>,
  Casts extends Record<string, CastHandler<S>>,
  // `{}` when there is no `args`: then every handler types its own parameters.
  // eslint-disable-next-line @typescript-eslint/no-empty-object-type
  const A extends Readonly<Record<string, ArgSchemas>> = {},
>(
  definition: ServiceDefinition<S, Calls, Casts> & { args?: A; calls?: Calls & CallsTypedBy<S, NoInfer<A>>; casts?: Casts & CastsTypedBy<S, NoInfer<A>> },
): Omit<ServiceDefinition<S, Calls, Casts>, 'args'> & { readonly args?: A } {
  return Object.freeze({ ...definition });
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Tail<T extends readonly unknown[]> = T extends readonly [any, ...infer Rest] ? Rest : never;
type ReplyOf<F> = F extends (...args: never[]) => infer R ? (Awaited<R> extends { reply: infer Reply } ? Reply : never) : never;

/**
 * The typed client of a service: calls return a promise of their reply, casts return nothing.
 * `const seq = kernel.client<ClientOf<typeof sequence>>('sequence'); await seq.nextNumber()`.
 */
export type ClientOf<D> =
  D extends ServiceDefinition<infer _S, infer Calls, infer Casts>
    ? NamedOnly<{ [M in keyof Calls]: (...args: ClientArgs<D, M, Calls[M]>) => Promise<ReplyOf<Calls[M]>> }> &
        NamedOnly<{ [M in keyof Casts]: (...args: ClientArgs<D, M, Casts[M]>) => void }>
    : never;

/**
 * A method's parameters for a caller: from its schemas when it declares them (so an argument that
 * may be left out is optional), else from its handler.
 */
type ClientArgs<D, M, Handler> = D extends { readonly args?: infer A }
  ? string extends keyof A
    ? HandlerArgs<Handler>
    : M extends keyof A
      ? A[M] extends ArgSchemas
        ? ArgsFrom<A[M]>
        : HandlerArgs<Handler>
      : HandlerArgs<Handler>
  : HandlerArgs<Handler>;
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type HandlerArgs<Handler> = Handler extends (...args: any[]) => unknown ? Tail<Parameters<Handler>> : never;

/** A definition without `casts` (or `calls`) infers a string index; a client should not offer one. */
type NamedOnly<T> = string extends keyof T ? unknown : T;

/** What an HTTP route's handler receives, and what it replies (see the release's `http` config). */
export type { HttpReply, HttpRequest } from './common/protocol.ts';

/** What socket handlers receive and return (see `sockets` in ServiceDefinition). */
export type { ConnectionId, SocketClose, SocketInfo, SocketRequest, SocketResult, SocketSend } from './common/protocol.ts';

/** TypeBox's schema builder, for `args`: a service needs no import of its own. */
export { Type, type Static, type TSchema } from '@sinclair/typebox';

/**
 * The schema of what an HTTP route's handler receives (HttpRequest), for its `args`:
 * `args: { httpNext: [HttpRequestSchema] }`. The front door always sends a request of this shape,
 * so it refuses only other callers' arguments (a console typing `sequence.httpNext(5)`). A
 * narrower schema (`Type.Object({ query: Type.Object({ page: Type.String({ pattern: '^[0-9]+$' }) }) })`)
 * is checked against every request: one that does not match gets 400, with the E_ARGS_INVALID
 * message saying what did not. The body is text or bytes; a schema cannot see inside it.
 */
export const HttpRequestSchema = Type.Object(
  {
    method: Type.String(),
    path: Type.String(),
    query: Type.Record(Type.String(), Type.Union([Type.String(), Type.Array(Type.String())])),
    headers: Type.Record(Type.String(), Type.Union([Type.String(), Type.Array(Type.String()), Type.Undefined()])),
    body: Type.Union([Type.String(), Type.Uint8Array(), Type.Null()]),
  },
  { title: 'request' },
);

