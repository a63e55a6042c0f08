// How WebSocket events travel between the front door (kernel main thread) and a service's worker,
// and how a socket handler's result comes back. Runs on both sides.
//
// As for HTTP (http-codec.ts), the main thread does as little as it can: an event goes out as a
// flat array of what `ws` and Node's parser produced, and the outcome comes back as flat lists
// of frames to write and connections to close. Building the handler's arguments and checking its
// result happen in the worker.

import { decodeHttpRequest } from './http-codec.ts';
import type { SocketInfo, SocketRequest } from './protocol.ts';

/** The socket handlers a service may define, by the event name a batch carries. */
export const SOCKET_EVENTS = ['open', 'message', 'close', 'restarted'] as const;
export type SocketEvent = (typeof SOCKET_EVENTS)[number];

/** An upgrade request as it travels: [connection id, path, raw query (without '?'), raw headers (name, value, ...)]. */
export type WireSocketOpen = [id: string, path: string, query: string, rawHeaders: string[]];

/** The arguments of each event, as they travel. */
export interface WireSocketArgs {
  open: WireSocketOpen;
  message: [id: string, data: string | Uint8Array];
  close: [id: string, code: number, reason: string];
  /** Every connection of the service that is open when its restarted worker serves. */
  restarted: [open: WireSocketOpen[]];
}

/**
 * What a socket handler asked for, ready to carry out: frames to send (to these connection ids,
 * or to every connection of the service when null) and connections to close, in order.
 */
export type WireSocketOutcome = [sends: Array<[to: string[] | null, data: string | Uint8Array]>, closes: Array<[id: string, code: number, reason: string]>];

/** What a handler that returns nothing, or only a state, asks for. */
export const NO_SOCKET_OUTCOME: WireSocketOutcome = [[], []];

/** The close codes a service may give: 1000 (normal) and the application range 3000-4999, as RFC 6455 allows. */
export function closeCodeAllowed(code: number): boolean {
  return code === 1000 || (Number.isInteger(code) && code >= 3000 && code <= 4999);
}

/** A close reason is at most 123 bytes (a control frame's 125, less the code's two). */
export const MAX_CLOSE_REASON_BYTES = 123;

function socketRequest([, path, query, rawHeaders]: WireSocketOpen): SocketRequest {
  const { query: parsed, headers } = decodeHttpRequest(['GET', path, query, rawHeaders, null]);
  return { path, query: parsed, headers };
}

/** The handler's arguments (after ctx) for an event. */
export function decodeSocketEvent(event: string, args: unknown[]): unknown[] {
  switch (event) {
    case 'open': {
      const wire = args as WireSocketArgs['open'];
      return [wire[0], socketRequest(wire)];
    }
    case 'restarted': {
      const [open] = args as WireSocketArgs['restarted'];
      return [open.map((wire): SocketInfo => ({ id: wire[0], ...socketRequest(wire) }))];
    }
    default:
      return args;
  }
}

/**
 * A socket handler's result, read: the next state (undefined: unchanged) and what to send and
 * close; or what is wrong with it. `self` is the connection the event came from (null for
 * `restarted`, which has none: its sends must name their connections).
 */
export function readSocketResult(self: string | null, result: unknown): { state: unknown; outcome: WireSocketOutcome } | { problem: string } {
  if (result === undefined) return { state: undefined, outcome: NO_SOCKET_OUTCOME };
  if (result === null || typeof result !== 'object' || Array.isArray(result)) return { problem: result === null ? 'null' : Array.isArray(result) ? 'an array' : `a ${typeof result}` };
  const { state, send, close } = result as { state?: unknown; send?: unknown; close?: unknown };
  const sends: WireSocketOutcome[0] = [];
  const closes: WireSocketOutcome[1] = [];
  if (send !== undefined) {
    if (!Array.isArray(send)) return { problem: '`send` that is not an array' };
    for (const [index, item] of send.entries()) {
      if (item === null || typeof item !== 'object') return { problem: `send[${index}] that is not an object` };
      const { data, to } = item as { data?: unknown; to?: unknown };
      if (typeof data !== 'string' && !(data instanceof Uint8Array)) return { problem: `send[${index}].data that is neither a string nor bytes` };
      let targets: string[] | null;
      if (to === undefined) {
        if (self === null) return { problem: `send[${index}] without \`to\` from restarted(), which has no connection of its own` };
        targets = [self];
      } else if (to === 'all') targets = null;
      else if (typeof to === 'string') targets = [to];
      else if (Array.isArray(to) && to.every((id) => typeof id === 'string')) targets = to as string[];
      else return { problem: `send[${index}].to that is not a connection id, a list of them, or 'all'` };
      sends.push([targets, data]);
    }
  }
  if (close !== undefined) {
    if (!Array.isArray(close)) return { problem: '`close` that is not an array' };
    for (const [index, item] of close.entries()) {
      if (item === null || typeof item !== 'object') return { problem: `close[${index}] that is not an object` };
      const { id = self, code = 1000, reason = '' } = item as { id?: unknown; code?: unknown; reason?: unknown };
      if (typeof id !== 'string') return { problem: `close[${index}] without an id (restarted() has no connection of its own)` };
      if (typeof code !== 'number' || !closeCodeAllowed(code)) return { problem: `close[${index}].code ${JSON.stringify(code)} (use 1000, or 3000-4999 for the application's own)` };
      if (typeof reason !== 'string' || Buffer.byteLength(reason) > MAX_CLOSE_REASON_BYTES) return { problem: `close[${index}].reason that is not a string of at most ${MAX_CLOSE_REASON_BYTES} bytes` };
      closes.push([id, code, reason]);
    }
  }
  return { state, outcome: sends.length === 0 && closes.length === 0 ? NO_SOCKET_OUTCOME : [sends, closes] };
}
