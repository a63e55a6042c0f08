// The kernel's record of one service: which worker runs it now, from which release and bundle,
// and the main thread's own clients of it. A hot swap replaces `current`; everything that talks to
// the service keeps talking to the host or to a port whose far end the swap moves.
//
//   starting --> running <--> swapping              (a hot swap, switched or rolled back)
//                running <--> restarting            (supervision)
//                running ---> crashed ---> restarting  (a crash on probation, held for the revert)
//                any but stopped ---> failed ;  running, failed, crashed ---> stopping ---> stopped
//
// The transitions are one table, and every change of state goes through `transition`.

import { ServiceClient } from '../common/client.ts';
import { createLink, type InboundLink, type ServiceDescriptor, type ServiceSource, type StateSnapshot } from '../common/protocol.ts';
import type { Bundle } from '../release/bundler.ts';
import type { HostState, LastSwap } from '../common/status.ts';
import type { ServiceWorker } from './service-worker.ts';
import { checkTransition, type TransitionTable } from '../common/lifecycle.ts';

const allowedTransitions: TransitionTable<HostState> = {
  starting: ['running', 'failed', 'stopping'],
  running: ['swapping', 'restarting', 'crashed', 'failed', 'stopping'],
  // A rolled-back swap returns to running; one whose old worker died hands it to supervision.
  swapping: ['running', 'restarting', 'failed'],
  // A revert that failed leaves the service crashed again, for the next step.
  restarting: ['running', 'crashed', 'failed'],
  crashed: ['restarting', 'failed', 'stopping'],
  failed: ['stopping'],
  stopping: ['stopped'],
  stopped: [],
};

export class ServiceHost {
  readonly name: string;
  #state: HostState = 'starting';
  current: ServiceWorker;
  source: ServiceSource;
  bundle: Bundle;
  startedAt = Date.now();
  failure: string | null = null;
  lastSwap: LastSwap | null = null;
  /** The state as of the last checkpoint, kept in memory for a restart after a crash. */
  lastSnapshot: { snapshot: StateSnapshot; release: string; at: string } | null = null;
  /**
   * Settles once the state a pre-copied swap switched in with is in lastSnapshot (the retiring
   * old worker gives it): a restart before then waits for it rather than take an older one.
   */
  pendingSnapshot: Promise<void> | null = null;
  /** When the worker was restarted recently (for the restart-intensity limit), and how often in all. */
  restartTimes: number[] = [];
  restarts = 0;
  /**
   * Switched in by an upgrade whose probation is not over: a crash is not restarted but left for
   * the revert (state 'crashed'), since restarting bad code would only race it.
   */
  onProbation = false;
  /** Calls and casts served by this service's earlier workers, so totals survive swaps. */
  servedByRetired = { calls: 0, casts: 0 };

  #clients = new Set<ServiceClient>();
  #defaultClient: ServiceClient | null = null;
  /** Service ends of callers that arrived while the ports were in transit during a swap. */
  #heldCallers: InboundLink[] = [];
  /** Service ends created before the first start; handed over with the start request. */
  #initialCallers: InboundLink[] = [];
  readonly controlTimeoutMs: number;

  constructor(name: string, worker: ServiceWorker, source: ServiceSource, bundle: Bundle, controlTimeoutMs: number) {
    this.name = name;
    this.current = worker;
    this.source = source;
    this.bundle = bundle;
    this.controlTimeoutMs = controlTimeoutMs;
  }

  get state(): HostState {
    return this.#state;
  }

  /** Moves to `next`, when the table allows it: anything else is a kernel bug, said as such. */
  transition(next: HostState): void {
    if (next === this.#state) return;
    this.#state = checkTransition(allowedTransitions, `service '${this.name}'`, this.#state, next);
  }

  get descriptor(): ServiceDescriptor {
    return this.current.descriptor;
  }

  get release(): string {
    return this.current.release;
  }

  /** The main thread's shared client, created on first use. */
  defaultClient(): ServiceClient {
    this.#defaultClient ??= this.newClient();
    return this.#defaultClient;
  }

  /** A main-thread client with its own port (its own ordering and its own queue). */
  newClient(): ServiceClient {
    const { caller, service } = createLink(this.descriptor);
    const client = new ServiceClient(this.name, caller.port, caller.methods, caller.taken);
    this.#clients.add(client);
    client.onClose = () => {
      this.#clients.delete(client);
      if (this.#defaultClient === client) this.#defaultClient = null;
    };
    this.attachCaller(service);
    return client;
  }

  /** Gives the service the far end of a new caller's channel, wherever its ports are right now. */
  attachCaller(link: InboundLink): void {
    switch (this.#state) {
      case 'starting':
        this.#initialCallers.push(link);
        return;
      case 'running':
        void this.current.request('attach', { link }, this.controlTimeoutMs, [link.port]).catch(() => link.port.close());
        return;
      case 'swapping':
      case 'restarting':
      case 'crashed':
        // The inbound ports are with the kernel or moving; this one joins them at switch or resume.
        this.#heldCallers.push(link);
        return;
      default:
        link.port.close();
    }
  }

  takeInitialCallers(): InboundLink[] {
    const ports = this.#initialCallers;
    this.#initialCallers = [];
    return ports;
  }

  takeHeldCallers(): InboundLink[] {
    const ports = this.#heldCallers;
    this.#heldCallers = [];
    return ports;
  }

  /** After a switch: the main thread's clients learn the new code's calls and casts. */
  updateMethodTables(): void {
    for (const client of this.#clients) client.setMethods(this.descriptor);
  }

  /** A release removed the service: the main thread's clients refuse new calls; those sent are still answered. */
  refuseNewCalls(reason: string): void {
    for (const client of this.#clients) client.refuseNew(reason, 'E_SERVICE_REMOVED');
  }

  closeClients(reason: string, code: 'E_SERVICE_DOWN' | 'E_SERVICE_REMOVED' = 'E_SERVICE_DOWN'): void {
    for (const client of [...this.#clients]) client.close(reason, code);
    this.#clients.clear();
    this.#defaultClient = null;
    for (const link of [...this.#heldCallers, ...this.#initialCallers]) link.port.close();
    this.#heldCallers = [];
    this.#initialCallers = [];
  }

  /** The main thread's clients of this service. */
  get clients(): ReadonlySet<ServiceClient> {
    return this.#clients;
  }

  get strayReplies(): number {
    let total = 0;
    for (const client of this.#clients) total += client.strayReplies;
    return total;
  }
}
