// How HTTP requests and replies travel between the front door (kernel main thread) and a service's
// worker. Runs on both sides.
//
// The main thread owns the sockets and is the front door's bottleneck, so it does as little as
// it can: a request goes out as a flat array of what Node's parser already produced, and the
// reply comes back ready to write (status, a flat header list, a string or bytes body). Building
// the handler's request object and encoding its reply happen in the worker, which has time.

import type { HttpReply, HttpRequest } from './protocol.ts';

/** [method, path, raw query (without '?', '' when none), raw headers (name, value, ...), body] */
export type WireHttpRequest = [method: string, path: string, query: string, rawHeaders: string[], body: string | Uint8Array | null];

/** [status, headers (name, value, ...), body]: what the front door writes as it is. */
export type WireHttpReply = [status: number, headers: Array<string | number>, body: string | Uint8Array];

/** Headers the front door sets itself: a handler's values would break the connection's framing. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'content-length', 'upgrade', 'trailer', 'te', 'proxy-connection']);

/** The handler's view of a request: query parameters and headers as objects. */
export function decodeHttpRequest(wire: WireHttpRequest): HttpRequest {
  const [method, path, rawQuery, rawHeaders, body] = wire;
  // Names come from the client: gathered in Maps, so `constructor` finds nothing inherited and
  // `__proto__` sets no prototype; Object.fromEntries then makes each an ordinary own key.
  const headers = new Map<string, string | string[]>();
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!.toLowerCase();
    const value = rawHeaders[i + 1]!;
    const existing = headers.get(name);
    // As Node does: set-cookie keeps every value in an array, other repeats are joined.
    if (existing === undefined) headers.set(name, name === 'set-cookie' ? [value] : value);
    else if (Array.isArray(existing)) existing.push(value);
    else headers.set(name, `${existing}, ${value}`);
  }
  const query = new Map<string, string | string[]>();
  if (rawQuery !== '') {
    for (const [name, value] of new URLSearchParams(rawQuery)) {
      const existing = query.get(name);
      if (existing === undefined) query.set(name, value);
      else if (Array.isArray(existing)) existing.push(value);
      else query.set(name, [existing, value]);
    }
  }
  return { method, path, query: Object.fromEntries(query), headers: Object.fromEntries(headers), body };
}

/**
 * The reply, ready to write; or a description of what is wrong with it (the client gets 502). A
 * string body is sent as text, bytes as application/octet-stream, anything else as JSON; the
 * handler's content-type wins. 204 and 304 carry no body and no content-length.
 */
export function encodeHttpReply(value: unknown): WireHttpReply | { problem: string } {
  if (value === null || typeof value !== 'object' || Array.isArray(value) || value instanceof Uint8Array) {
    return { problem: Array.isArray(value) ? 'an array' : value === null ? 'null' : typeof value === 'object' ? 'bytes' : `a ${typeof value}` };
  }
  const { status = 200, headers, body } = value as HttpReply;
  if (!Number.isInteger(status) || status < 200 || status > 599) return { problem: `status ${JSON.stringify(status)}` };
  if (headers !== undefined && (headers === null || typeof headers !== 'object' || Array.isArray(headers))) return { problem: 'headers that are not an object' };
  let payload: string | Uint8Array;
  let contentType: string | null = null;
  if (body === undefined || body === null) payload = '';
  else if (typeof body === 'string') {
    payload = body;
    contentType = 'text/plain; charset=utf-8';
  } else if (body instanceof Uint8Array) {
    payload = body;
    contentType = 'application/octet-stream';
  } else {
    try {
      payload = JSON.stringify(body) ?? '';
    } catch (error) {
      return { problem: `a body that is not JSON (${error instanceof Error ? error.message : String(error)})` };
    }
    contentType = 'application/json; charset=utf-8';
  }
  const flat: Array<string | number> = [];
  if (headers) {
    for (const name of Object.keys(headers)) {
      const lower = name.toLowerCase();
      if (HOP_BY_HOP.has(lower)) continue;
      if (lower === 'content-type') contentType = null;
      const headerValue = headers[name];
      if (Array.isArray(headerValue)) for (const each of headerValue) flat.push(name, String(each));
      else if (typeof headerValue === 'string' || typeof headerValue === 'number') flat.push(name, headerValue);
      else return { problem: `header '${name}' with a value that is not a string, number or array of strings` };
    }
  }
  if (status === 204 || status === 304) return [status, flat, ''];
  if (contentType) flat.push('content-type', contentType);
  flat.push('content-length', typeof payload === 'string' ? Buffer.byteLength(payload) : payload.byteLength);
  return [status, flat, payload];
}
