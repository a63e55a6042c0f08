// The caller's side of a service: one MessagePort, a table of pending calls, and a Proxy that turns
// `client.nextNumber(1)` into a frame. Used by the kernel's main thread and, for calls between
// services, inside workers; the same code on both sides keeps the semantics identical.
//
// The port's other end lives in whichever worker currently runs the service. A hot swap moves that
// end to the new worker with its queue intact, so this side never notices a swap.

import type { MessagePort } from 'node:worker_threads';
import { deserializeError, theseusError } from './errors.ts';
import { explainCloneFailure } from './plain-data.ts';
import { FRAME_CALL, FRAME_CAST, REPLY_OK, type MethodTable, type ReplyFrame } from './protocol.ts';

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

interface Pending {
  resolve(value: unknown): void;
  reject(error: unknown): void;
}

export class ServiceClient {
  readonly service: string;
  #port: MessagePort;
  #pending = new Map<number, Pending>();
  #nextId = 1;
  #casts: Set<string>;
  #methods: MethodTable;
  #closedReason: string | null = null;
  #proxy: object | null = null;
  #methodFns = new Map<string, (...args: unknown[]) => unknown>();
  /** Called once when the client is closed, so its owner can forget it. */
  onClose: (() => void) | null = null;
  /** Replies whose call was not pending: answered twice, or after the call was given up. Should stay 0. */
  strayReplies = 0;

  constructor(service: string, port: MessagePort, methods: MethodTable) {
    this.service = service;
    this.#port = port;
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

  /** The port moved in from elsewhere (a resumed worker gets its ports back as new objects). */
  rebind(port: MessagePort): void {
    this.#port = port;
    this.#closedReason = null;
    this.#listen(port);
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
    if (this.#closedReason !== null) {
      return Promise.reject(theseusError('E_SERVICE_DOWN', this.service, this.#closedReason));
    }
    const id = this.#nextId++;
    try {
      this.#port.postMessage(args.length === 0 ? [FRAME_CALL, id, method] : [FRAME_CALL, id, method, args]);
    } catch (error) {
      return Promise.reject(theseusError('E_ARGS_NOT_CLONEABLE', this.service, method, explainCloneFailure(args, 'args', error)));
    }
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
    });
  }

  cast(method: string, args: unknown[]): void {
    if (this.#closedReason !== null) throw theseusError('E_SERVICE_DOWN', this.service, this.#closedReason);
    try {
      this.#port.postMessage(args.length === 0 ? [FRAME_CAST, 0, method] : [FRAME_CAST, 0, method, args]);
    } catch (error) {
      throw theseusError('E_ARGS_NOT_CLONEABLE', this.service, method, explainCloneFailure(args, 'args', error));
    }
  }

  /** `client.method(...args)`: a call, or a cast when the service declares `method` as one. */
  proxy<Api extends object>(): Api {
    if (!this.#proxy) {
      this.#proxy = new Proxy(Object.create(null) as object, {
        get: (_target, name) => {
          // `then` must stay undefined or `await client` would treat the client as a promise.
          if (typeof name !== 'string' || name === 'then') return undefined;
          let fn = this.#methodFns.get(name);
          if (!fn) {
            fn = (...args: unknown[]) => (this.#casts.has(name) ? this.cast(name, args) : this.call(name, args));
            this.#methodFns.set(name, fn);
          }
          return fn;
        },
      });
      clientsByProxy.set(this.#proxy, this);
    }
    return this.#proxy as Api;
  }

  /** Rejects everything pending; later calls reject at once. */
  close(reason: string): void {
    this.#fail(reason);
    this.#port.close();
    this.onClose?.();
    this.onClose = null;
  }

  #listen(port: MessagePort): void {
    port.on('message', (frame: ReplyFrame) => {
      const pending = this.#pending.get(frame[0]);
      if (pending === undefined) {
        this.strayReplies++;
        return;
      }
      this.#pending.delete(frame[0]);
      if (frame[1] === REPLY_OK) pending.resolve(frame[2]);
      else pending.reject(deserializeError(frame[2]));
    });
    // The service's end closes when its worker dies (not when it is moved): nothing pending can be
    // answered any more, and it must not hang.
    port.once('close', () => this.#fail('its worker exited'));
  }

  #fail(reason: string): void {
    this.#closedReason ??= reason;
    if (this.#pending.size === 0) return;
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const entry of pending) entry.reject(theseusError('E_SERVICE_DOWN', this.service, reason));
  }
}
