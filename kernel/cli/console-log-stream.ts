// The console's log stream: the services' log lines, from a second control connection that stays
// open for as long as the console does, and comes back by itself when the kernel does.

import { TheseusError } from '../common/errors.ts';
import type { LogRecord } from '../common/protocol.ts';
import { ControlConnection } from './control-client.ts';

/** How long to wait between tries to reattach after the kernel went away. */
const REATTACH_INTERVAL_MS = 1000;

export interface LogStreamHandlers {
  onRecord(record: LogRecord): void;
  /** The kernel went away (stopped, restarted, crashed). */
  onDetached(): void;
  /** ...and is back. */
  onReattached(): void;
  /** The kernel answered the request with an error (it never answers a `logs` request otherwise). */
  onRefused(error: TheseusError): void;
}

/**
 * A `logs` request on a connection of its own: the kernel sends every log line as a `log` frame
 * until the connection closes, and never answers. Unlike request(), it can be closed, which the
 * console does when the user leaves; and it reattaches by itself if the kernel goes and comes back.
 */
export class LogStream {
  readonly #root: string;
  readonly #handlers: LogStreamHandlers;
  #connection: ControlConnection | null = null;
  #retry: NodeJS.Timeout | null = null;
  #attached = false;
  /** It was attached, then lost the kernel: the next attach is a reattach. */
  #wasDetached = false;
  #closed = false;

  constructor(root: string, handlers: LogStreamHandlers) {
    this.#root = root;
    this.#handlers = handlers;
  }

  /** Resolves once the request is sent (or the attempt failed, in which case it retries). */
  async open(): Promise<void> {
    await this.#connect();
  }

  close(): void {
    this.#closed = true;
    if (this.#retry) clearTimeout(this.#retry);
    this.#retry = null;
    this.#connection?.close();
    this.#connection = null;
  }

  async #connect(): Promise<void> {
    let connection: ControlConnection;
    try {
      connection = await ControlConnection.open(this.#root);
    } catch {
      this.#lost();
      return;
    }
    if (this.#closed) {
      connection.close();
      return;
    }
    this.#connection = connection;
    const reattached = this.#wasDetached;
    this.#attached = true;
    this.#wasDetached = false;
    if (reattached) this.#handlers.onReattached();
    // The kernel never answers a `logs` request: it ends when the connection does.
    connection.request('logs', {}, { timeoutMs: 2 ** 31 - 1, onLog: (record) => this.#handlers.onRecord(record) }).then(
      () => this.#lost(),
      (error: unknown) => {
        if (this.#connection === connection) this.#connection = null;
        if (error instanceof TheseusError && error.code !== 'E_KERNEL_NOT_RUNNING' && error.code !== 'E_KERNEL_TIMEOUT') {
          // Retrying would be refused the same way: give up on the stream, once.
          this.close();
          this.#handlers.onRefused(error);
          return;
        }
        // A connection that drops is a kernel that went away: retried.
        this.#lost();
      },
    );
  }

  #lost(): void {
    if (this.#closed) return;
    if (this.#attached) {
      this.#attached = false;
      this.#wasDetached = true;
      this.#handlers.onDetached();
    }
    this.#retry ??= setTimeout(() => {
      this.#retry = null;
      void this.#connect();
    }, REATTACH_INTERVAL_MS);
  }
}
