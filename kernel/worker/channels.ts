// A service worker's channels: the service ends of its callers' ports (each with the cell where
// the worker records the call it starts), and its own clients of the services it uses. A swap
// hands them all over at once (with the backlog taken from them) and a roll-back gives them back.
// Runs in a service's worker thread.

import type { MessagePort } from 'node:worker_threads';
import { ServiceClient } from '../common/client.ts';
import { theseusError } from '../common/errors.ts';
import type { InboundLink, MethodTable, OutboundLink, PortSet, QueuedFrame, RequestFrame } from '../common/protocol.ts';
import type { ReplyPort } from './mailbox.ts';

export class Channels {
  #service: string;
  #uses: readonly string[];
  #onFrame: (port: MessagePort, frame: RequestFrame) => void;
  #inbound = new Map<MessagePort, Int32Array>();
  #listeners = new Map<MessagePort, (frame: RequestFrame) => void>();
  #watchedForClose = new WeakSet<MessagePort>();
  #outbound = new Map<string, ServiceClient>();

  constructor(service: string, uses: readonly string[], onFrame: (port: MessagePort, frame: RequestFrame) => void) {
    this.#service = service;
    this.#uses = uses;
    this.#onFrame = onFrame;
  }

  /** The caller's cell in which this worker records each call it starts (none for a departed caller). */
  takenCell(port: ReplyPort): Int32Array | undefined {
    return port ? this.#inbound.get(port) : undefined;
  }

  /** Callers' service ends to serve; returns the port of each, by its index in `links`. */
  add(links: readonly InboundLink[]): void {
    for (const link of links) this.#inbound.set(link.port, link.taken);
  }

  /** The port of the caller at `index` of `links`, or null for a caller that went away (-1). */
  static portAt(links: readonly InboundLink[], index: number): ReplyPort {
    return index < 0 ? null : (links[index]?.port ?? null);
  }

  listenAll(): void {
    for (const port of this.#inbound.keys()) this.listen(port);
  }

  /** Removing the last 'message' listener stops a port: its messages wait inside it. */
  stopListening(): void {
    for (const port of this.#inbound.keys()) {
      const listener = this.#listeners.get(port);
      if (!listener) continue;
      port.off('message', listener);
      this.#listeners.delete(port);
    }
  }

  listen(port: MessagePort): void {
    if (this.#listeners.has(port)) return;
    const listener = (frame: RequestFrame) => this.#onFrame(port, frame);
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

  /** Hands over every port, and the backlog taken from them, each message pointing at its caller. */
  release(backlog: Array<[ReplyPort, RequestFrame]>): PortSet {
    const inbound = [...this.#inbound].map(([port, taken]) => ({ port, taken }));
    const indexOf = new Map(inbound.map((link, index) => [link.port, index]));
    const queued: QueuedFrame[] = backlog.map(([port, frame]) => [port === null ? -1 : (indexOf.get(port) ?? -1), frame]);
    this.#inbound.clear();
    const outbound: PortSet['outbound'] = {};
    for (const [name, client] of this.#outbound) {
      outbound[name] = { port: client.detach(), methods: client.methods, taken: client.taken };
    }
    // Keep the client objects: a resume rebinds them to the ports it brings back.
    return queued.length > 0 ? { inbound, outbound, queued } : { inbound, outbound };
  }

  /** The client ends to the services it uses, as a start, a switch or a resume brings them. */
  adoptOutbound(outbound: PortSet['outbound']): void {
    for (const [name, { port, methods, taken }] of Object.entries(outbound)) {
      const existing = this.#outbound.get(name);
      if (existing) {
        existing.rebind(port, taken);
        existing.setMethods(methods);
      } else {
        this.#outbound.set(name, new ServiceClient(name, port, methods, taken));
      }
    }
  }

  /** A service this one uses was restarted: its client gets the new channel. */
  rewire(service: string, link: OutboundLink): void {
    const client = this.#outbound.get(service);
    if (client) {
      client.setMethods(link.methods);
      client.rebind(link.port, link.taken);
    } else {
      this.#outbound.set(service, new ServiceClient(service, link.port, link.methods, link.taken));
    }
  }

  peerDown(service: string, reason: string): void {
    this.#outbound.get(service)?.fail(reason);
  }

  peerMethods(service: string, methods: MethodTable): void {
    this.#outbound.get(service)?.setMethods(methods);
  }

  /** The client of a service listed in `uses`, for ctx.client(). */
  client(name: string): ServiceClient {
    const client = this.#outbound.get(name);
    if (client) return client;
    if (!this.#uses.includes(name)) throw theseusError('E_NOT_IN_USES', this.#service, name);
    throw theseusError('E_UNKNOWN_SERVICE', name, [...this.#outbound.keys()].join(', '));
  }

  /** Calls this worker made to other services and still waits for. */
  outboundPending(): number {
    let pending = 0;
    for (const client of this.#outbound.values()) pending += client.pendingCount;
    return pending;
  }

  closeAll(): void {
    for (const port of this.#inbound.keys()) port.close();
    for (const client of this.#outbound.values()) client.close('the calling service stopped');
    this.#inbound.clear();
    this.#outbound.clear();
  }
}
