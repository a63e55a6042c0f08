// The caller's side of a service: one MessagePort, a table of pending calls, and a Proxy that turns
// `client.nextNumber(1)` into a frame. Used by the kernel's main thread and, for calls between
// services, inside workers; the same code on both sides keeps the semantics identical.
//
// The port's other end lives in whichever worker currently runs the service. A hot swap moves that
// end to the new worker with its queue intact, so this side never notices a swap.
//
// If the service's worker dies, the port closes. The shared `taken` cell then says which calls the
// worker had started: those reject (they may or may not have run), and the rest, which never
// started, wait for the kernel to restart the service and are sent again on the new channel
// (`rebind`). If the service is not coming back, `fail()` rejects them. Nothing hangs.

import type { MessagePort } from 'node:worker_threads';
import { deserializeError, serializeError, theseusError } from './errors.ts';
import { explainCloneFailure } from './plain-data.ts';
import { FRAME_BATCH, FRAME_CALL, FRAME_CAST, REPLY_ERROR, REPLY_OK, type BatchedCall, type BatchedResult, type BatchEncoding, type MethodTable, type ReplyFrame, type RequestFrame } from './protocol.ts';

/** From a client proxy back to its ServiceClient, for closeClient(). */
const clientsByProxy = new WeakMap<object, ServiceClient>();

/**
 * Closes a client made with `kernel.client(name, { dedicated: true })`: its port closes, the
 * service drops its end, and calls still pending reject with E_SERVICE_DOWN.
 */
export function closeClient(proxy: object): void {
  const client = clientsByProxy.get(proxy);
  if (!client) throw new TypeError('closeClient() takes a client returned by kernel.client()');
  client.close('the client was closed');
}

/**
 * The object callers hold: `proxy.name(...args)` is a cast when `isCast(name)`, else a call. The
 * same for every kind of client, so a pooled service's client looks like a stateful one's.
 */
export function methodProxy(isCast: (name: string) => boolean, call: (name: string, args: unknown[]) => Promise<unknown>, cast: (name: string, args: unknown[]) => void): object {
  const methodFns = new Map<string, (...args: unknown[]) => unknown>();
  return new Proxy(Object.create(null) as object, {
    get: (_target, name) => {
      // `then` must stay undefined or `await client` would treat the client as a promise.
      if (typeof name !== 'string' || name === 'then') return undefined;
      let fn = methodFns.get(name);
      if (!fn) {
        fn = (...args: unknown[]) => (isCast(name) ? cast(name, args) : call(name, args));
        methodFns.set(name, fn);
      }
      return fn;
    },
  });
}

interface Pending {
  resolve(value: unknown): void;
  reject(error: unknown): void;
  /** Kept so a call that never started can be sent again to a restarted worker. */
  frame: RequestFrame;
  /** A batch cut by a crash: the outcomes of its calls that had started (they failed). */
  done?: BatchedResult[];
}

/** How long calls that never started wait for their service to be restarted. */
const RESTART_WAIT_MS = 30_000;

/** `a` was issued after `b`, for ids that wrap around in an Int32 cell. */
function issuedAfter(a: number, b: number): boolean {
  return (((a | 0) - (b | 0)) | 0) > 0;
}

export class ServiceClient {
  readonly service: string;
  #port: MessagePort;
  #taken: Int32Array;
  #pending = new Map<number, Pending>();
  /** Casts sent but perhaps not yet started; trimmed as the service's `taken` cell moves on. */
  #unstartedCasts: RequestFrame[] = [];
  #nextId = 1;
  #casts: Set<string>;
  #methods: MethodTable;
  /** Set when the client is closed or its service is gone for good: calls reject at once. */
  #closedReason: string | null = null;
  /** What a closed client's calls reject with: the service is down, or was removed by a release. */
  #closedCode: 'E_SERVICE_DOWN' | 'E_SERVICE_REMOVED' = 'E_SERVICE_DOWN';
  /** Set when a restart took too long: calls reject at once, until a new channel arrives. */
  #downReason: string | null = null;
  /** Set while the service's worker is dead and a restart may bring it back. */
  #waitingForRestart: NodeJS.Timeout | null = null;
  #proxy: object | null = null;
  /** Called once when the client is closed, so its owner can forget it. */
  onClose: (() => void) | null = null;
  /** Replies whose call was not pending: answered twice, or after the call was given up. Should stay 0. */
  strayReplies = 0;

  constructor(service: string, port: MessagePort, methods: MethodTable, taken: Int32Array) {
    this.service = service;
    this.#port = port;
    this.#taken = taken;
    this.#methods = methods;
    this.#casts = new Set(methods.casts);
    this.#listen(port);
  }

  get methods(): MethodTable {
    return this.#methods;
  }

  get pendingCount(): number {
    return this.#pending.size;
  }

  get taken(): Int32Array {
    return this.#taken;
  }

  /**
   * A new channel to the service: after a resume (the same worker, its ports moved back) or after
   * a restart (a new worker). Calls that never started are sent again, in their original order.
   */
  rebind(port: MessagePort, taken: Int32Array): void {
    // Only a dead channel's calls are sent again: a channel that merely moved (a swap rolled back)
    // still holds its queue, and sending those calls again would run them twice.
    const channelDied = this.#waitingForRestart !== null || this.#downReason !== null;
    this.#port = port;
    this.#taken = taken;
    if (this.#waitingForRestart) clearTimeout(this.#waitingForRestart);
    this.#waitingForRestart = null;
    this.#downReason = null;
    this.#listen(port);
    if (!channelDied) return;
    const resend = [...this.#unstartedCasts, ...[...this.#pending.values()].map((pending) => pending.frame)].sort((a, b) => (issuedAfter(a[1], b[1]) ? 1 : -1));
    this.#unstartedCasts = [];
    // The new channel's cell starts just before the first id sent on it, so "started or not"
    // compares ids that are close together even after they wrap around the Int32 range.
    Atomics.store(taken, 0, ((resend[0]?.[1] ?? this.#nextId) - 1) | 0);
    for (const frame of resend) {
      port.postMessage(frame);
      if (frame[0] === FRAME_CAST) this.#unstartedCasts.push(frame);
    }
  }

  /** Stops listening and returns the port so it can be transferred. Only when nothing is pending. */
  detach(): MessagePort {
    this.#port.removeAllListeners('message');
    this.#port.removeAllListeners('close');
    return this.#port;
  }

  setMethods(methods: MethodTable): void {
    this.#methods = methods;
    this.#casts = new Set(methods.casts);
  }

  call(method: string, args: unknown[]): Promise<unknown> {
    return this.#request(FRAME_CALL, method, args);
  }

  /**
   * Several calls in one message, run by the service one after another; resolves with each one's
   * outcome in order. If the service's worker dies in the middle, the calls it had started come
   * back as E_SERVICE_DOWN and the others go to the restarted worker, as single calls would.
   */
  callBatch(calls: BatchedCall[], encoding: BatchEncoding = ''): Promise<BatchedResult[]> {
    return this.#request(FRAME_BATCH, encoding, calls) as Promise<BatchedResult[]>;
  }

  #request(kind: typeof FRAME_CALL | typeof FRAME_BATCH, method: string, args: unknown[]): Promise<unknown> {
    const down = this.#closedReason ?? this.#downReason;
    if (down !== null) return Promise.reject(theseusError(this.#closedReason !== null ? this.#closedCode : 'E_SERVICE_DOWN', this.service, down));
    const id = this.#nextId++;
    const frame: RequestFrame = args.length === 0 && kind === FRAME_CALL ? [kind, id, method] : [kind, id, method, args];
    // While the service restarts, the call waits here and goes out with the resend.
    if (this.#waitingForRestart === null) {
      try {
        this.#port.postMessage(frame);
      } catch (error) {
        return Promise.reject(theseusError('E_ARGS_NOT_CLONEABLE', this.service, kind === FRAME_BATCH ? 'batch' : method, explainCloneFailure(args, 'args', error)));
      }
    }
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, frame });
    });
  }

  cast(method: string, args: unknown[]): void {
    const down = this.#closedReason ?? this.#downReason;
    if (down !== null) throw theseusError(this.#closedReason !== null ? this.#closedCode : 'E_SERVICE_DOWN', this.service, down);
    const id = this.#nextId++;
    const frame: RequestFrame = args.length === 0 ? [FRAME_CAST, id, method] : [FRAME_CAST, id, method, args];
    if (this.#waitingForRestart === null) {
      try {
        this.#port.postMessage(frame);
      } catch (error) {
        throw theseusError('E_ARGS_NOT_CLONEABLE', this.service, method, explainCloneFailure(args, 'args', error));
      }
    }
    this.#trimStartedCasts();
    this.#unstartedCasts.push(frame);
  }

  /** `client.method(...args)`: a call, or a cast when the service declares `method` as one. */
  proxy<Api extends object>(): Api {
    if (!this.#proxy) {
      this.#proxy = methodProxy(
        (name) => this.#casts.has(name),
        (name, args) => this.call(name, args),
        (name, args) => this.cast(name, args),
      );
      clientsByProxy.set(this.#proxy, this);
    }
    return this.#proxy as Api;
  }

  /** Rejects everything pending; later calls reject at once. */
  close(reason: string, code: 'E_SERVICE_DOWN' | 'E_SERVICE_REMOVED' = 'E_SERVICE_DOWN'): void {
    if (this.#closedReason === null) this.#closedCode = code;
    this.fail(reason);
    this.#port.close();
    this.onClose?.();
    this.onClose = null;
  }

  /**
   * The service is leaving (a release removed it): later calls reject at once, while the calls
   * already sent are still answered as it drains. close() ends the rest.
   */
  refuseNew(reason: string, code: 'E_SERVICE_DOWN' | 'E_SERVICE_REMOVED'): void {
    if (this.#closedReason !== null) return;
    this.#closedReason = reason;
    this.#closedCode = code;
  }

  /** The service is gone for good: reject everything pending, and every later call. */
  fail(reason: string): void {
    this.#closedReason ??= reason;
    if (this.#waitingForRestart) clearTimeout(this.#waitingForRestart);
    this.#waitingForRestart = null;
    this.#rejectAll(reason);
  }

  #rejectAll(reason: string): void {
    this.#unstartedCasts = [];
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    const code = this.#closedReason !== null ? this.#closedCode : 'E_SERVICE_DOWN';
    for (const entry of pending) entry.reject(theseusError(code, this.service, reason));
  }

  #listen(port: MessagePort): void {
    port.on('message', (frame: ReplyFrame) => {
      const pending = this.#pending.get(frame[0]);
      if (pending === undefined) {
        this.strayReplies++;
        return;
      }
      this.#pending.delete(frame[0]);
      if (frame[1] !== REPLY_OK) pending.reject(deserializeError(frame[2]));
      else if (pending.done) pending.resolve([...pending.done, ...(frame[2] as BatchedResult[])]);
      else pending.resolve(frame[2]);
    });
    // The service's end closes when its worker dies (not when it is moved).
    port.once('close', () => {
      if (port === this.#port) this.#workerDied();
    });
  }

  #trimStartedCasts(): void {
    const taken = Atomics.load(this.#taken, 0);
    let keep = 0;
    while (keep < this.#unstartedCasts.length && !issuedAfter(this.#unstartedCasts[keep]![1], taken)) keep++;
    if (keep > 0) this.#unstartedCasts.splice(0, keep);
  }

  #workerDied(): void {
    if (this.#closedReason !== null || this.#waitingForRestart !== null) return;
    // Calls the worker had started may or may not have run: they fail, and never run twice.
    const taken = Atomics.load(this.#taken, 0);
    for (const [id, pending] of this.#pending) {
      if (issuedAfter(id, taken)) continue;
      const frame = pending.frame;
      if (id === taken && frame[0] === FRAME_BATCH) {
        // A batch fails only as far as it got; its calls that never started wait for the restart.
        const calls = frame[3] as BatchedCall[];
        const started = Math.min(Atomics.load(this.#taken, 1), calls.length);
        if (started < calls.length) {
          const failed = serializeError(theseusError('E_SERVICE_DOWN', this.service, 'its worker exited while handling this call'));
          pending.done = [...(pending.done ?? []), ...calls.slice(0, started).map((): BatchedResult => [REPLY_ERROR, failed])];
          pending.frame = [FRAME_BATCH, id, frame[2], calls.slice(started)];
          continue;
        }
      }
      this.#pending.delete(id);
      pending.reject(theseusError('E_SERVICE_DOWN', this.service, 'its worker exited while handling this call'));
    }
    this.#trimStartedCasts();
    // The rest never started: they wait for a restart, within limits. Past the wait they fail,
    // and so do later calls, but a restart that comes later still reopens the client.
    this.#waitingForRestart = setTimeout(() => {
      this.#waitingForRestart = null;
      this.#downReason = 'its worker exited and was not restarted in time';
      this.#rejectAll(this.#downReason);
    }, RESTART_WAIT_MS);
    this.#waitingForRestart.unref?.();
  }
}
