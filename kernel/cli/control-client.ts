// The CLI's side of the control socket. Runs in the CLI's process. Every request has a timeout,
// and a missing or dead kernel is reported as such: no verb ever hangs.

import { readFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { TheseusError, theseusError } from '../common/errors.ts';
import { decodeFrames, encodeFrame, type ControlOpName, type ControlReplies, type ControlRequest, type ControlResponse, type PhaseEvent } from '../common/control-protocol.ts';
import type { LogRecord } from '../common/protocol.ts';
import { runningPid, varPaths } from '../common/deploy-paths.ts';

export interface RequestOptions {
  timeoutMs?: number;
  onEvent?: (event: PhaseEvent) => void;
  /** Log lines of a `logs` stream. */
  onLog?: (record: LogRecord) => void;
}

/**
 * Nothing answers on the root's socket: no kernel runs there, unless its pid file names a process
 * that does run (a kernel still starting, or stuck), which `start` would refuse to start beside.
 */
async function noAnswer(root: string, why: string): Promise<TheseusError> {
  const pid = await runningPid(root);
  return pid === null ? theseusError('E_KERNEL_NOT_RUNNING', root, why) : theseusError('E_KERNEL_NOT_ANSWERING', root, pid, why);
}

export async function readCookie(root: string): Promise<string> {
  const file = varPaths(root).cookie;
  try {
    return (await readFile(file, 'utf8')).trim();
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw await noAnswer(root, 'no cookie in var/');
    throw theseusError('E_COOKIE_UNREADABLE', file, code ?? String(error));
  }
}

export async function request<Op extends ControlOpName>(
  root: string,
  op: Op,
  args: Extract<ControlRequest, { op: Op }>['args'],
  options: RequestOptions = {},
): Promise<ControlReplies[Op]> {
  const cookie = await readCookie(root);
  // The kernel's handler answers each op with its ControlReplies type (control-server.ts checks
  // that at compile time); the frame is JSON, so this is where the type is restored.
  return (await send(varPaths(root).socket, { v: 1, cookie, id: 1, op, args }, op, root, options)) as ControlReplies[Op];
}

/** Sends one frame as given (tests use this to send bad cookies and bad frames). */
export function send(socketPath: string, frame: unknown, op: string, root: string, options: RequestOptions = {}): Promise<unknown> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  return new Promise((resolve, reject) => {
    const socket = connect(socketPath);
    let buffered: Buffer = Buffer.alloc(0);
    let settled = false;
    let unanswered = false;
    const finish = (error: unknown, value?: unknown) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (error) reject(error);
      else resolve(value);
    };
    const timer = setTimeout(() => finish(theseusError('E_KERNEL_TIMEOUT', op, timeoutMs)), timeoutMs);
    socket.once('connect', () => socket.write(typeof frame === 'object' && frame !== null && Buffer.isBuffer(frame) ? frame : encodeFrame(frame)));
    socket.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT' || error.code === 'ECONNREFUSED') {
        // The close that follows must not settle first: this reason is the one to give.
        unanswered = true;
        void noAnswer(root, `nothing listens on ${socketPath}`).then((reason) => finish(reason));
      } else if (error.code === 'EACCES') finish(theseusError('E_COOKIE_UNREADABLE', socketPath, 'permission denied on the socket'));
      else finish(error);
    });
    socket.on('close', () => {
      if (!unanswered) finish(theseusError('E_KERNEL_NOT_RUNNING', root, `the kernel closed the connection before answering '${op}'`));
    });
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      const decoded = decodeFrames(buffered);
      if ('error' in decoded) {
        finish(theseusError('E_FRAME_INVALID', `the kernel sent a bad frame (${decoded.error})`));
        return;
      }
      buffered = decoded.rest;
      for (const frame of decoded.frames as ControlResponse[]) {
        if (frame.kind === 'event') {
          options.onEvent?.(frame.event);
          continue;
        }
        if (frame.kind === 'log') {
          options.onLog?.(frame.record);
          continue;
        }
        if (frame.ok) finish(null, frame.result);
        else {
          const error = new TheseusError(frame.error.code, frame.error.message);
          if (frame.error.phase) error.phase = frame.error.phase as TheseusError['phase'];
          finish(error);
        }
      }
    });
  });
}

/**
 * One connection for many requests, several in flight at once (the demo's load, a console). Each
 * request has its own id and timeout; a lost connection rejects everything waiting on it.
 */
export class ControlConnection {
  #socket: import('node:net').Socket;
  #cookie: string;
  #nextId = 1;
  #pending = new Map<number, { resolve(value: unknown): void; reject(error: unknown): void; timer: NodeJS.Timeout; options: RequestOptions }>();
  #buffered: Buffer = Buffer.alloc(0);

  private constructor(socket: import('node:net').Socket, cookie: string, root: string) {
    this.#socket = socket;
    this.#cookie = cookie;
    socket.on('data', (chunk: Buffer) => this.#receive(chunk));
    socket.on('close', () => this.#failAll(theseusError('E_KERNEL_NOT_RUNNING', root, 'the kernel closed the connection')));
    socket.on('error', () => undefined);
  }

  static async open(root: string): Promise<ControlConnection> {
    const cookie = await readCookie(root);
    const socketPath = varPaths(root).socket;
    return new Promise((resolve, reject) => {
      const socket = connect(socketPath);
      socket.once('connect', () => resolve(new ControlConnection(socket, cookie, root)));
      socket.once('error', (error: NodeJS.ErrnoException) => {
        if (error.code === 'ENOENT' || error.code === 'ECONNREFUSED') void noAnswer(root, `nothing listens on ${socketPath}`).then(reject);
        else reject(error);
      });
    });
  }

  request<Op extends ControlOpName>(op: Op, args: Extract<ControlRequest, { op: Op }>['args'], options: RequestOptions = {}): Promise<unknown> {
    const id = this.#nextId++;
    const timeoutMs = options.timeoutMs ?? 30_000;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(theseusError('E_KERNEL_TIMEOUT', op, timeoutMs));
      }, timeoutMs);
      this.#pending.set(id, { resolve, reject, timer, options });
      this.#socket.write(encodeFrame({ v: 1, cookie: this.#cookie, id, op, args }));
    });
  }

  close(): void {
    this.#socket.end();
    this.#socket.destroy();
  }

  #receive(chunk: Buffer): void {
    this.#buffered = Buffer.concat([this.#buffered, chunk]);
    const decoded = decodeFrames(this.#buffered);
    if ('error' in decoded) {
      this.#failAll(theseusError('E_FRAME_INVALID', `the kernel sent a bad frame (${decoded.error})`));
      this.close();
      return;
    }
    this.#buffered = decoded.rest;
    for (const frame of decoded.frames as ControlResponse[]) {
      const pending = this.#pending.get(frame.id);
      if (!pending) continue;
      if (frame.kind === 'event') {
        pending.options.onEvent?.(frame.event);
        continue;
      }
      if (frame.kind === 'log') {
        pending.options.onLog?.(frame.record);
        continue;
      }
      this.#pending.delete(frame.id);
      clearTimeout(pending.timer);
      if (frame.ok) pending.resolve(frame.result);
      else {
        const error = new TheseusError(frame.error.code, frame.error.message);
        if (frame.error.phase) error.phase = frame.error.phase as TheseusError['phase'];
        pending.reject(error);
      }
    }
  }

  #failAll(error: unknown): void {
    for (const pending of this.#pending.values()) {
      clearTimeout(pending.timer);
      pending.reject(error);
    }
    this.#pending.clear();
  }
}
