// Warm spares: worker threads that have booted the worker runtime and wait, with no service code,
// to be told which service to load. A swap's prepare takes one instead of starting a thread, so
// the new worker pays only for its service's bundle. Runs in the kernel's main thread.
//
// A spare is handed out only once it has said it is ready and while its thread is alive, and only
// if the kernel's environment is still the one it copied when it started, so it runs exactly as a
// fresh worker started now would. Refilling waits while a swap holds the pool: a new thread
// booting would compete for the cores with the swap's pause.

import type { Worker } from 'node:worker_threads';
import { PROTOCOL_VERSION, type SpareBootData, type WorkerToKernel } from '../common/protocol.ts';
import { startWorkerThread } from './service-worker.ts';

interface Spare {
  worker: Worker;
  ready: boolean;
  /** The kernel's environment when the thread started (a worker copies it then). */
  env: string;
  /** Removes the pool's listeners once the spare is handed out or gone. */
  detach(): void;
}

export interface SpareStats {
  /** Spares the kernel keeps (the `spareWorkers` option). */
  wanted: number;
  /** Spares booted and waiting. */
  ready: number;
  /** Spares still booting. */
  booting: number;
  /** Spares handed out to become a service's worker, since the kernel started. */
  taken: number;
  /** Spares whose thread ended while they waited (replaced, never handed out). */
  diedIdle: number;
  /** Thread ids of the spares waiting or booting. */
  threadIds: number[];
}

/** Spares whose thread ends before they are ready, in a row, after which the pool stops refilling. */
const MAX_FAILED_BOOTS = 3;

export class SpareWorkers {
  readonly #wanted: number;
  readonly #runtimeFile: () => Promise<string>;
  readonly #log: (level: 'warn' | 'info', message: string) => void;
  #file: string | null = null;
  #spares: Spare[] = [];
  #holds = 0;
  #stopped = false;
  #failedBoots = 0;
  /** Spares could not be started (see the log): every new worker boots from nothing. */
  #gaveUp = false;
  #taken = 0;
  #diedIdle = 0;
  #readyListeners = new Set<() => void>();

  constructor(wanted: number, runtimeFile: () => Promise<string>, log: (level: 'warn' | 'info', message: string) => void) {
    this.#wanted = wanted;
    this.#runtimeFile = runtimeFile;
    this.#log = log;
  }

  /** Learns where the runtime bundle is (once), then starts spares up to the wanted number. */
  async start(): Promise<void> {
    if (this.#wanted === 0) return;
    try {
      this.#file = await this.#runtimeFile();
    } catch (error) {
      // Spares only save time: without them every new worker boots from nothing, as it would anyway.
      this.#log('warn', `no spare workers: the worker runtime could not be bundled (${error instanceof Error ? error.message : String(error)})`);
      this.#gaveUp = true;
      this.#changed();
      return;
    }
    this.fill();
  }

  /**
   * A ready spare's thread, taken out of the pool (the caller now owns it), or null when none is
   * ready. Synchronous, so no exit can slip in between the check and the hand-over.
   */
  take(): Worker | null {
    const env = environment();
    for (const spare of [...this.#spares]) {
      // threadId is -1 as soon as the thread has stopped, before its 'exit' event is emitted.
      if (!spare.ready || spare.worker.threadId === -1) continue;
      this.#remove(spare);
      if (spare.env !== env) {
        // Started before the kernel's environment changed: a fresh thread would see another one.
        void spare.worker.terminate();
        continue;
      }
      this.#taken++;
      // From now on it is a service's worker, which keeps the process alive as a fresh one does.
      spare.worker.ref();
      return spare.worker;
    }
    return null;
  }

  /** Starts spares up to the wanted number, unless a swap holds the pool or the kernel stops. */
  fill(): void {
    if (this.#holds > 0 || this.#stopped || this.#file === null || this.#gaveUp) return;
    try {
      while (this.#spares.length < this.#wanted) this.#spares.push(this.#boot(this.#file));
    } catch (error) {
      // A thread that cannot even start would fail the same way at every try.
      this.#gaveUp = true;
      this.#log('warn', `a spare worker could not start (${error instanceof Error ? error.message : String(error)}); new workers boot from nothing`);
      this.#changed();
    }
  }

  /** A swap is under way: no spare boots until release(). */
  hold(): void {
    this.#holds++;
  }

  /** The swap is over (switched or rolled back, old workers retired): refill now. */
  release(): void {
    this.#holds = Math.max(0, this.#holds - 1);
    this.fill();
  }

  /** Ends every spare and starts no more; resolves once their threads have exited. */
  async stop(): Promise<void> {
    this.#stopped = true;
    const spares = this.#spares;
    this.#spares = [];
    for (const spare of spares) spare.detach();
    await Promise.all(spares.map((spare) => spare.worker.terminate()));
  }

  stats(): SpareStats {
    return {
      wanted: this.#wanted,
      ready: this.#spares.filter((spare) => spare.ready).length,
      booting: this.#spares.filter((spare) => !spare.ready).length,
      taken: this.#taken,
      diedIdle: this.#diedIdle,
      threadIds: this.#spares.map((spare) => spare.worker.threadId),
    };
  }

  /** Resolves once every wanted spare is ready (or the pool gave up or stopped). */
  whenFull(): Promise<void> {
    if (this.#full()) return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => {
        if (!this.#full()) return;
        this.#readyListeners.delete(check);
        resolve();
      };
      this.#readyListeners.add(check);
    });
  }

  #full(): boolean {
    const ready = this.#spares.filter((spare) => spare.ready).length;
    return this.#stopped || this.#gaveUp || this.#wanted === 0 || ready >= this.#wanted;
  }

  #changed(): void {
    for (const listener of [...this.#readyListeners]) listener();
  }

  #boot(file: string): Spare {
    const data: SpareBootData = { protocol: PROTOCOL_VERSION, spare: true };
    const worker = startWorkerThread(file, data, 'spare worker');
    const spare: Spare = {
      worker,
      ready: false,
      env: environment(),
      detach: () => {
        worker.off('message', onMessage);
        worker.off('exit', onExit);
        worker.off('error', onError);
      },
    };
    const onMessage = (message: WorkerToKernel) => {
      if (message.kind !== 'spare-ready') return;
      spare.ready = true;
      this.#failedBoots = 0;
      this.#changed();
    };
    let lastError: unknown = null;
    const onError = (error: unknown) => {
      lastError = error;
    };
    const onExit = (code: number) => {
      this.#remove(spare);
      const why = lastError instanceof Error ? `uncaught ${lastError.message}` : `exit code ${code}`;
      if (spare.ready) {
        this.#diedIdle++;
        this.#log('warn', `a spare worker's thread ended while it waited (${why}); another replaces it`);
      } else if (++this.#failedBoots >= MAX_FAILED_BOOTS) {
        this.#gaveUp = true;
        this.#log('warn', `${MAX_FAILED_BOOTS} spare workers in a row ended before they were ready (${why}); no more are started, and new workers boot from nothing`);
      }
      this.fill();
      this.#changed();
    };
    worker.on('message', onMessage);
    worker.on('error', onError);
    worker.on('exit', onExit);
    // A waiting spare must not keep the kernel's process alive on its own.
    worker.unref();
    return spare;
  }

  #remove(spare: Spare): void {
    const index = this.#spares.indexOf(spare);
    if (index < 0) return;
    this.#spares.splice(index, 1);
    spare.detach();
  }
}

/** The environment a worker started now would copy. */
function environment(): string {
  return JSON.stringify(process.env);
}
