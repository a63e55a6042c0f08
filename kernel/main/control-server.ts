// The kernel's side of the control socket. Runs in the kernel's main thread.
//
// The socket is created owner-only (mode 0600, inside the 0700 var/ folder) and every request must
// carry the cookie. A frame that is too large, not JSON, not a valid request or has the wrong
// cookie is answered with a coded error and the connection is closed; the kernel carries on.

import { timingSafeEqual } from 'node:crypto';
import { chmod, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import type { TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { errorMessage, serializeError, theseusError, TheseusError } from '../common/errors.ts';
import {
  ControlRequestSchema,
  MAX_FRAME_BYTES,
  decodeFrames,
  encodeFrame,
  type ControlOpName,
  type ControlReplies,
  type ControlRequest,
  type ControlResponse,
  type PhaseEvent,
} from '../common/control-protocol.ts';
import type { LogRecord } from '../common/protocol.ts';

export interface ControlChannel {
  /** A progress event for this request. */
  emit(event: PhaseEvent): void;
  /** A log line, for the `logs` stream. */
  log(record: LogRecord): void;
  /** Resolves when the client goes away (a `logs` stream ends there). */
  closed: Promise<void>;
}


/** Each request's schema by its `op`, for errors that name the field at fault. */
const requestSchemaByOp = new Map<string, TSchema>(
  ControlRequestSchema.anyOf.map((member) => [String((member.properties.op as { const?: unknown }).const), member as TSchema]),
);

/** Control connections open at once; more are refused. */
const MAX_CONNECTIONS = 256;
/** How long a connection may sit on a half-sent frame before it is closed. */
export const PARTIAL_FRAME_TIMEOUT_MS = 10_000;

export interface ControlServerOptions {
  /** PARTIAL_FRAME_TIMEOUT_MS unless set; a test sets less, so it need not wait out 10 s. */
  partialFrameTimeoutMs?: number;
}

export type ControlHandler = (request: ControlRequest, channel: ControlChannel) => Promise<unknown>;

/**
 * One handler per op, each returning exactly what that op answers (ControlReplies), so the
 * compiler checks the kernel's side of every reply that the CLI reads without a cast.
 */
export type ControlHandlers = {
  [Op in ControlOpName]: (args: Extract<ControlRequest, { op: Op }>['args'], channel: ControlChannel) => Promise<ControlReplies[Op]>;
};

/** The handler that sends each request to its op's handler. */
export function dispatchTo(handlers: ControlHandlers): ControlHandler {
  return (request, channel) => (handlers[request.op] as (args: unknown, channel: ControlChannel) => Promise<unknown>)(request.args, channel);
}

export class ControlServer {
  #server: Server;
  #path: string;
  #cookie: Buffer;
  #sockets = new Set<Socket>();
  #partialFrameTimeoutMs: number;

  private constructor(path: string, cookie: string, handler: ControlHandler, options: ControlServerOptions) {
    this.#path = path;
    this.#partialFrameTimeoutMs = options.partialFrameTimeoutMs ?? PARTIAL_FRAME_TIMEOUT_MS;
    this.#cookie = Buffer.from(cookie);
    this.#server = createServer((socket) => this.#serve(socket, handler));
  }

  static async listen(path: string, cookie: string, handler: ControlHandler, options: ControlServerOptions = {}): Promise<ControlServer> {
    const server = new ControlServer(path, cookie, handler, options);
    // The umask makes the socket owner-only from the moment it exists; the chmod makes sure.
    const previous = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => {
        server.#server.once('error', reject);
        server.#server.listen(path, () => resolve());
      });
    } finally {
      process.umask(previous);
    }
    await chmod(path, 0o600);
    return server;
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.#server.close(() => resolve());
      for (const socket of this.#sockets) socket.destroy();
    });
    await rm(this.#path, { force: true });
  }

  #serve(socket: Socket, handler: ControlHandler): void {
    if (this.#sockets.size >= MAX_CONNECTIONS) {
      socket.end(encodeFrame({ id: 0, kind: 'result', ok: false, error: { code: 'E_FRAME_INVALID', message: `The kernel already has ${MAX_CONNECTIONS} control connections open; close some and retry.` } }));
      return;
    }
    this.#sockets.add(socket);
    // One promise per connection, shared by its requests (a `logs` stream ends with it).
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.once('close', () => this.#sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    // A frame left half-sent is a client that hung or a slow attack: it does not hold the
    // connection (and its buffer) forever.
    socket.setTimeout(this.#partialFrameTimeoutMs, () => {
      if (buffered.length > 0) socket.destroy();
    });
    let buffered: Buffer = Buffer.alloc(0);
    const send = (response: ControlResponse) => {
      if (!socket.destroyed) socket.write(encodeFrame(response));
    };
    const refuse = (id: number, error: TheseusError) => {
      send({ id, kind: 'result', ok: false, error: { code: error.code, message: error.message } });
      socket.end();
    };
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      const decoded = decodeFrames(buffered);
      if ('error' in decoded) {
        refuse(0, decoded.error === 'too-large' ? theseusError('E_FRAME_TOO_LARGE', decoded.size ?? 0, MAX_FRAME_BYTES) : theseusError('E_FRAME_INVALID', 'it is not JSON'));
        buffered = Buffer.alloc(0);
        return;
      }
      buffered = decoded.rest;
      for (const frame of decoded.frames) {
        const id = typeof (frame as { id?: unknown })?.id === 'number' ? (frame as { id: number }).id : 0;
        // The cookie is checked before the shape, so a stranger learns nothing about the protocol.
        const cookie = (frame as { cookie?: unknown })?.cookie;
        if (typeof cookie !== 'string' || !this.#cookieMatches(cookie)) {
          refuse(id, theseusError('E_BAD_COOKIE'));
          return;
        }
        if (!Value.Check(ControlRequestSchema, frame)) {
          // A union's own error says only "Expected union value": check against the request its
          // `op` names, whose error names the field.
          const op = (frame as { op?: unknown })?.op;
          const schema = (typeof op === 'string' && requestSchemaByOp.get(op)) || ControlRequestSchema;
          const first = [...Value.Errors(schema, frame)][0];
          refuse(id, theseusError('E_FRAME_INVALID', `${first?.path || '/'} ${first?.message ?? 'does not match the protocol'}`));
          return;
        }
        const request = frame;
        const channel: ControlChannel = {
          emit: (event) => send({ id: request.id, kind: 'event', event }),
          log: (record) => send({ id: request.id, kind: 'log', record }),
          closed,
        };
        handler(request, channel).then(
          (result) => send({ id: request.id, kind: 'result', ok: true, result: result ?? null }),
          (error: unknown) => {
            const serialized = serializeError(error);
            send({
              id: request.id,
              kind: 'result',
              ok: false,
              error: { code: serialized.code, message: error instanceof TheseusError ? error.message : errorMessage(error), ...(serialized.phase ? { phase: serialized.phase } : {}) },
            });
          },
        );
      }
    });
  }

  #cookieMatches(cookie: string): boolean {
    const given = Buffer.from(cookie);
    return given.length === this.#cookie.length && timingSafeEqual(given, this.#cookie);
  }
}
