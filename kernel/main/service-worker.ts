// The kernel's handle on one worker thread running one release of one service. It speaks the
// control half of the protocol: every request has a timeout, and a worker that exits rejects
// everything still waiting on it, so nothing in the kernel can hang on a dead thread.

import { Worker, type TransferListItem, type WorkerOptions } from 'node:worker_threads';
import { TheseusError, deserializeError, errorMessage, theseusError } from '../common/errors.ts';
import { postWithPorts } from '../common/ports.ts';
import {
  PROTOCOL_VERSION,
  type ControlOp,
  type ControlRequests,
  type LogRecord,
  type PortSet,
  type ServiceDescriptor,
  type SpareBoot,
  type SpareBootData,
  type WorkerBootData,
  type WorkerToKernel,
} from '../common/protocol.ts';

export interface ServiceWorkerOptions {
  service: string;
  release: string;
  moduleUrl: string;
  staticDir?: string | null;
  config?: Record<string, unknown>;
  checkpointEveryChanges?: number;
  /** Reply durability: the folder the worker writes its own checkpoint to before it replies. */
  durableStateDir?: string | null;
  /** The worker asks for a checkpoint (its state changed often enough since the last). */
  onCheckpointDue?: () => void;
  runtimeFile: string;
  bootTimeoutMs: number;
  onLog(record: LogRecord): void;
  /**
   * A warm spare's thread (spare-workers.ts), already running the runtime from `runtimeFile`: it
   * is told its service by message instead of being started with it.
   */
  spare?: Worker | null;
}

/**
 * How every service worker thread starts, spare or fresh, so a spare that becomes a service's
 * worker runs with exactly the flags, limits and environment a fresh one would have had.
 */
export function startWorkerThread(runtimeFile: string, workerData: WorkerBootData | SpareBootData, name: string): Worker {
  const options: WorkerOptions = {
    workerData,
    name,
    // None of the kernel's own Node flags: workers run plain bundled JavaScript, a loader such as
    // tsx (from `node --import tsx`) would triple their boot time, and some per-process flags
    // (--expose-gc) make new Worker() throw.
    execArgv: [],
  };
  return new Worker(runtimeFile, options);
}

interface PendingRequest {
  op: ControlOp;
  resolve(value: unknown): void;
  reject(error: unknown): void;
  timer: NodeJS.Timeout;
}

/** Lifecycle of one worker as the kernel sees it. */
export type WorkerLifecycle = 'booting' | 'loaded' | 'exited';

export class ServiceWorker {
  readonly service: string;
  readonly release: string;
  readonly threadId: number;
  descriptor!: ServiceDescriptor;
  lifecycle: WorkerLifecycle = 'booting';
  /** Resolves with the exit code once the thread has ended. */
  readonly exited: Promise<number>;
  exitReason: string | null = null;

  #worker: Worker;
  #pending = new Map<number, PendingRequest>();
  #nextRid = 1;
  #onUnexpectedExit: ((reason: string) => void) | null = null;
  #expectingExit = false;

  private constructor(options: ServiceWorkerOptions) {
    this.service = options.service;
    this.release = options.release;
    const boot: WorkerBootData = {
      protocol: PROTOCOL_VERSION,
      service: options.service,
      release: options.release,
      moduleUrl: options.moduleUrl,
      staticDir: options.staticDir ?? null,
      config: options.config ?? {},
      checkpointEveryChanges: options.checkpointEveryChanges ?? 0,
      durableStateDir: options.durableStateDir ?? null,
    };
    if (options.spare) {
      this.#worker = options.spare;
      this.#worker.postMessage({ kind: 'boot', boot } satisfies SpareBoot);
    } else {
      this.#worker = startWorkerThread(options.runtimeFile, boot, `${options.service}@${options.release}`);
    }
    this.threadId = this.#worker.threadId;
    let lastError: unknown = null;
    this.#worker.on('error', (error) => {
      lastError = error;
    });
    this.exited = new Promise((resolve) => {
      this.#worker.once('exit', (code) => {
        this.lifecycle = 'exited';
        this.exitReason = lastError ? `uncaught ${errorMessage(lastError)}` : `exit code ${code}`;
        const error = theseusError('E_WORKER_EXITED', this.service, this.release, 'a control request', this.exitReason);
        for (const pending of this.#pending.values()) {
          clearTimeout(pending.timer);
          pending.reject(error);
        }
        this.#pending.clear();
        if (!this.#expectingExit) this.#onUnexpectedExit?.(this.exitReason);
        resolve(code);
      });
    });
    this.#worker.on('message', (message: WorkerToKernel) => this.#receive(message, options));
  }

  /** Starts a worker and waits until its service module has loaded and described itself. */
  static async load(options: ServiceWorkerOptions): Promise<ServiceWorker> {
    const handle = new ServiceWorker(options);
    await handle.#loaded(options.bootTimeoutMs);
    return handle;
  }

  onUnexpectedExit(callback: (reason: string) => void): void {
    this.#onUnexpectedExit = callback;
  }

  /**
   * Sends one control request and waits for its response. A `ports` PortSet in the payload is
   * transferred; `transfer` lists anything else to move rather than copy.
   */
  request<Op extends ControlOp>(
    op: Op,
    payload: ControlRequests[Op]['request'],
    timeoutMs: number,
    transfer: TransferListItem[] = [],
  ): Promise<ControlRequests[Op]['response']> {
    if (this.lifecycle === 'exited') {
      return Promise.reject(theseusError('E_WORKER_EXITED', this.service, this.release, op, this.exitReason ?? 'it had already exited'));
    }
    const rid = this.#nextRid++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(rid);
        reject(theseusError('E_CONTROL_TIMEOUT', `${this.service}@${this.release}`, op, timeoutMs));
      }, timeoutMs);
      this.#pending.set(rid, { op, resolve: resolve as (value: unknown) => void, reject, timer });
      try {
        const send = (message: unknown, list: TransferListItem[]) => this.#worker.postMessage(message, list);
        const ports = (payload as { ports?: PortSet | null }).ports;
        if (ports) {
          // The ports travel in the transfer list; a caller that went away meanwhile is dropped.
          postWithPorts(send, (live) => ({ kind: 'request', rid, op, ...payload, ports: live }), ports, transfer);
        } else {
          send({ kind: 'request', rid, op, ...payload }, transfer);
        }
      } catch (error) {
        clearTimeout(timer);
        this.#pending.delete(rid);
        reject(error);
      }
    });
  }

  /** Ends the thread at once. Resolves once it has exited. */
  async terminate(): Promise<void> {
    this.#expectingExit = true;
    if (this.lifecycle !== 'exited') await this.#worker.terminate();
    await this.exited;
  }

  /** Marks that the worker is expected to exit (retired after a swap, or stopping). */
  expectExit(): void {
    this.#expectingExit = true;
  }

  #loaded(timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        fail(theseusError('E_BOOT_FAILED', this.service, this.release, `its module did not finish loading within ${timeoutMs} ms`));
      }, timeoutMs);
      const fail = (error: TheseusError) => {
        clearTimeout(timer);
        this.#expectingExit = true;
        void this.#worker.terminate();
        reject(error);
      };
      this.#loadWaiter = {
        loaded: () => {
          clearTimeout(timer);
          resolve();
        },
        failed: fail,
      };
      void this.exited.then(() => {
        if (this.lifecycle !== 'loaded' && this.#loadWaiter) {
          fail(theseusError('E_BOOT_FAILED', this.service, this.release, this.exitReason ?? 'the thread exited'));
        }
      });
    });
  }

  #loadWaiter: { loaded(): void; failed(error: TheseusError): void } | null = null;

  #receive(message: WorkerToKernel, options: ServiceWorkerOptions): void {
    switch (message.kind) {
      case 'loaded':
        this.descriptor = message.descriptor;
        this.lifecycle = 'loaded';
        this.#loadWaiter?.loaded();
        this.#loadWaiter = null;
        return;
      case 'load-failed': {
        const waiter = this.#loadWaiter;
        this.#loadWaiter = null;
        const cause = deserializeError(message.error);
        const error = theseusError('E_BOOT_FAILED', this.service, this.release, cause.message);
        error.cause = cause;
        waiter?.failed(error);
        return;
      }
      case 'log':
        options.onLog(message.record);
        return;
      case 'checkpoint-due':
        options.onCheckpointDue?.();
        return;
      case 'spare-ready':
        // Only the spare pool waits for it; a spare is handed out once it has said so.
        return;
      case 'response': {
        const pending = this.#pending.get(message.rid);
        // A response to a request that timed out has nobody waiting; the caller of that request
        // already dealt with the timeout (a suspend timeout ends the worker).
        if (!pending) return;
        this.#pending.delete(message.rid);
        clearTimeout(pending.timer);
        if (message.ok) pending.resolve(message.value);
        else pending.reject(deserializeError(message.error));
        return;
      }
    }
  }
}
