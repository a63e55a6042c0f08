// Supervision: a service worker that dies while serving is started again from its last state,
// within a restart-intensity limit (maxRestarts within restartWindowMs), past which the service is
// marked failed and every call to it is told so. While an upgrade is on probation, a crash of the
// new code is not restarted: the service is held, crashed, until the upgrade is reverted (or
// probation is given up), since restarting bad code would only race the revert. Runs in the
// kernel's main thread.

import { errorMessage, theseusError } from '../common/errors.ts';
import type { HostState } from '../common/status.ts';
import type { ServiceSource } from '../common/protocol.ts';
import type { Bundle } from '../release/bundler.ts';
import type { Checkpointer } from './checkpointer.ts';
import type { KernelContext } from './kernel-context.ts';
import type { ServiceHost } from './service-host.ts';
import type { ServiceWorker } from './service-worker.ts';
import { rewireReplacement } from './wiring.ts';

/** The code a worker runs: a release's bundle and its source. */
export interface ReleaseCode {
  release: string;
  bundle: Bundle;
  source: ServiceSource;
}

export class Supervisor {
  #context: KernelContext;
  #checkpoints: Checkpointer;
  /** Restarts in progress; the kernel's stop waits for them so no worker outlives it. */
  #restarting = new Set<Promise<void>>();
  /** Told when a service on probation crashes (see probationCrashes). */
  #probationListeners = new Set<(service: string, reason: string) => void>();

  constructor(context: KernelContext, checkpoints: Checkpointer) {
    this.#context = context;
    this.#checkpoints = checkpoints;
  }

  /** Resolves once no restart is in progress. */
  async settled(): Promise<void> {
    await Promise.all(this.#restarting);
  }

  /** Watches a worker that serves (or is about to) `host`: its unexpected exit is handled here. */
  watch(host: ServiceHost, worker: ServiceWorker): void {
    worker.onUnexpectedExit((reason) => {
      if (host.current !== worker || !this.#context.running()) return;
      if (host.state === 'running') {
        void this.restart(host, reason);
        return;
      }
      // A swap handles the death of the workers it moves.
      if (host.state !== 'swapping') this.giveUp(host, `worker exited: ${reason}`);
    });
  }

  /** Restarts the service in its own code, or holds it for the revert when it is on probation. */
  restart(host: ServiceHost, reason: string): Promise<void> {
    if (host.onProbation) {
      this.#crashedOnProbation(host, reason);
      return Promise.resolve();
    }
    return this.#track(this.#restartHost(host, reason, null));
  }

  /** A new worker died as it took over: failed for good, or, on probation, held for the revert. */
  lost(host: ServiceHost, reason: string): void {
    if (host.onProbation) this.#crashedOnProbation(host, reason);
    else this.giveUp(host, reason);
  }

  /** How many times each service's worker was restarted, without asking any worker. */
  restartCounts(): Record<string, number> {
    return Object.fromEntries([...this.#context.hosts.values()].map((host) => [host.name, host.restarts]));
  }

  // -------------------------------------------------------------------------------------------
  // Probation: between the switch of a watched upgrade and its verdict.

  /** Services whose new worker crashed while on probation, each held until it is reverted. */
  probationCrashes(): Array<{ service: string; reason: string }> {
    return [...this.#context.hosts.values()].filter((host) => host.state === 'crashed').map((host) => ({ service: host.name, reason: host.failure ?? 'crashed' }));
  }

  /** Calls `listener` when a service on probation crashes; returns the function that stops it. */
  onProbationCrash(listener: (service: string, reason: string) => void): () => void {
    this.#probationListeners.add(listener);
    return () => this.#probationListeners.delete(listener);
  }

  /**
   * Ends probation when nothing crashed: returns [] and every service is supervised again. When
   * something crashed, returns the crashes and changes nothing: the caller reverts them. Checking
   * and ending in one synchronous step leaves no moment in which a crash goes unseen.
   */
  endProbation(): Array<{ service: string; reason: string }> {
    const crashes = this.probationCrashes();
    if (crashes.length > 0) return crashes;
    for (const host of this.#context.hosts.values()) host.onProbation = false;
    return [];
  }

  /**
   * Gives up on a revert: probation ends, and a service still crashed is restarted by supervision
   * in the code it crashed in (within the restart limits), since nothing else can serve it.
   */
  abandonProbation(): void {
    for (const host of this.#context.hosts.values()) {
      host.onProbation = false;
      if (host.state === 'crashed') void this.#track(this.#restartHost(host, host.failure ?? 'it crashed on probation', null));
    }
  }

  /**
   * Reverts a service that crashed on probation: a worker of `into` (the release it came from)
   * takes over from the crashed one's last state, migrated down in the crashed code when the vsn
   * differs. In reply durability that state holds every change a caller was told of.
   */
  async revertCrashed(host: ServiceHost, into: ReleaseCode): Promise<void> {
    if (host.state !== 'crashed') throw theseusError('E_SERVICE_NOT_RUNNING', host.name, `${host.state} (only a service that crashed on probation can be reverted this way)`);
    await this.#track(this.#restartHost(host, host.failure ?? 'it crashed on probation', into));
    // The restart changed the state behind TypeScript's back.
    const after = host.state as HostState;
    if (after !== 'running' || host.release !== into.release) throw theseusError('E_SERVICE_NOT_RUNNING', host.name, host.failure ?? after);
  }

  /** The service is failed for good: everything waiting on it, and every later call, is told so. */
  giveUp(host: ServiceHost, reason: string): void {
    host.transition('failed');
    host.failure = reason;
    this.#context.gaveUp?.(host.name);
    for (const client of host.clients) client.fail(reason);
    for (const link of host.takeHeldCallers()) link.port.close();
    for (const user of this.#context.hosts.values()) {
      if (user === host || user.state !== 'running' || !user.descriptor.uses.includes(host.name)) continue;
      void user.current.request('peer-down', { service: host.name, reason }, this.#context.options.controlTimeoutMs).catch(() => undefined);
    }
    this.#context.log('error', `${host.name}@${host.release} is marked failed: ${reason}`);
  }

  #crashedOnProbation(host: ServiceHost, reason: string): void {
    host.transition('crashed');
    host.failure = reason;
    this.#context.log('warn', `${host.name}@${host.release} crashed on probation (${reason}); its callers wait for the upgrade to be reverted`);
    for (const listener of this.#probationListeners) listener(host.name, reason);
  }

  #track(restart: Promise<void>): Promise<void> {
    const tracked = restart.finally(() => this.#restarting.delete(tracked));
    this.#restarting.add(tracked);
    return tracked;
  }

  /**
   * Starts a new worker for `host` from its last state and gives it new channels to everyone: a
   * restart in the same code (supervision, `into` null), or a revert into another release's code.
   * A state that cannot be brought to the new code's vsn fails it; it is never replaced by init().
   */
  async #restartHost(host: ServiceHost, reason: string, into: ReleaseCode | null): Promise<void> {
    const { maxRestarts, restartWindowMs, controlTimeoutMs, initTimeoutMs } = this.#context.options;
    if (!into) {
      const now = Date.now();
      host.restartTimes = host.restartTimes.filter((time) => now - time < restartWindowMs);
      host.restartTimes.push(now);
      if (host.restartTimes.length > maxRestarts) {
        this.giveUp(host, `worker exited (${reason}); it was restarted ${maxRestarts} times within ${restartWindowMs} ms, the limit`);
        return;
      }
      host.restarts++;
      this.#context.log('warn', `${host.name}@${host.release} worker exited (${reason}); restarting it (${host.restartTimes.length} of ${maxRestarts} within ${restartWindowMs} ms)`);
    } else {
      this.#context.log('warn', `${host.name}@${host.release} worker exited (${reason}); reverting it to ${into.release}`);
    }
    const wasCrashed = host.state === 'crashed';
    host.transition('restarting');
    const code = into ?? { release: host.release, bundle: host.bundle, source: host.source };
    let worker: ServiceWorker | null = null;
    let channels: ReturnType<typeof rewireReplacement> | null = null;
    try {
      // A restart is not in a swap's way: a warm spare shortens the callers' wait.
      worker = await this.#context.loadWorker(host.name, code.release, code.bundle, code.source, true);
      if (!this.#context.running()) {
        await worker.terminate();
        return;
      }
      const last = await this.#checkpoints.lastState(host);
      const crashedCode = { release: host.release, bundle: host.bundle, source: host.source };
      const snapshot = last && (await this.#checkpoints.adoptable(host.name, last.snapshot, worker.descriptor, last.writtenBy === host.release ? crashedCode : last.writtenBy));
      channels = rewireReplacement(
        host,
        worker.descriptor,
        this.#context.hosts,
        (user, link) => void user.current.request('rewire', { service: host.name, link }, controlTimeoutMs, [link.port]).catch(() => undefined),
        this.#context.pools,
      );
      channels.ports.inbound.push(...host.takeHeldCallers());
      if (snapshot) {
        // A copy: the kernel keeps its own for the next restart.
        const bytes = snapshot.bytes.slice();
        await worker.request('migrate', { snapshot: { vsn: snapshot.vsn, bytes } }, controlTimeoutMs, [bytes.buffer]);
        await worker.request('switch', { ports: channels.ports }, controlTimeoutMs);
      } else {
        await worker.request('start', { ports: channels.ports }, initTimeoutMs);
      }
      if (!this.#context.running()) {
        await worker.terminate();
        return;
      }
      const fromRelease = host.release;
      host.current = worker;
      host.transition('running');
      host.failure = null;
      // What it adopted is now the freshest state the kernel knows, for the next restart.
      if (snapshot) host.lastSnapshot = { snapshot, release: code.release, at: new Date().toISOString() };
      if (into) {
        host.bundle = into.bundle;
        host.source = into.source;
        host.onProbation = false;
        host.lastSwap = { fromRelease, toRelease: into.release, at: Date.now(), pauseMs: 0, outcome: 'reverted after a crash' };
        host.updateMethodTables();
      }
      this.watch(host, worker);
      channels.connect();
      for (const link of host.takeHeldCallers()) host.attachCaller(link);
      this.#context.log('info', `${host.name}@${host.release} ${into ? 'reverted' : 'restarted'} from ${last ? last.description : 'init() (no state was saved yet)'}`);
      this.#context.restarted?.(host.name);
    } catch (error) {
      // Nothing half-made is left behind: the new thread ends and the new channels close.
      await worker?.terminate();
      channels?.close();
      if (into && wasCrashed) {
        // The revert failed; the crashed service waits for the caller's next step.
        host.transition('crashed');
        host.failure = `${reason}; reverting it to ${into.release} failed: ${errorMessage(error)}`;
        this.#context.log('error', `${host.name}: ${host.failure}`);
        return;
      }
      this.giveUp(host, `worker exited (${reason}) and could not be restarted: ${errorMessage(error)}`);
    }
  }
}
