// The service swap: one explicit state machine that moves one or more running services to new
// code without losing, failing or repeating a call. Runs in the kernel's main thread; the release
// around it (install, probation, commit) is release-upgrade.ts's, and pooled services ride along
// in service-swap.ts. Each state belongs to one phase of kernel/common/phases.ts.
//
//   idle -> checking -> preparing -> suspending -> migrating -> switching -> retiring -> switched
//              |            |             |             |
//              v            +-------------+-------------+--> rolling-back -> rolled-back
//           refused
//
// checking     (check) bundle the new code, learn what it declares (from the manifest, or by
//              loading it in a new worker that is not started), plan each service, find every
//              migration path (swap-plan.ts). Nothing running is touched: a failure discards
//              what was loaded.
// preparing    (prepare) boot the remaining new workers in parallel, and give each old and new
//              worker a channel of their own: the new worker's migrate request, sent now, waits
//              on its end for the state. A failure discards them; the old ones never paused.
// suspending   (suspend) old workers start no handler (new messages wait in the ports), finish
//              the one running and its outgoing calls within the drain timeout, serialize their
//              state (down-migrated in the old, newer code on a downgrade) and send it straight
//              to their new worker, which adopts it at once; the ports and the backlog they had
//              taken come back to the kernel. Callers are suspended before the services they
//              call, so a draining handler can still get its answers.
// migrating    (migrate) the kernel waits for each new worker to have adopted the snapshot
//              (up-migrated in the new code); it gets the snapshot back, to keep for a restart.
// switching    (switch) in one synchronous turn of the kernel, every new worker gets its ports
//              and the backlog; the queued messages flow to it. All services switch, or (on any
//              earlier failure) none does.
// retiring     (switch) the old workers end; their threads must exit.
//
// Rolling back resumes each old worker with its own, untouched state, its ports and its backlog;
// callers see only latency. The hand-off keeps that true: the old worker sends the new one a
// serialized copy and keeps its own state object until it is retired, and the ports and the
// backlog never go to the new worker before the switch, so a new worker that dies or fails at
// any point before it takes nothing with it.

import { MessageChannel } from 'node:worker_threads';
import { TheseusError, errorMessage, inPhase, theseusError } from '../../common/errors.ts';
import { hangIfFaulted } from '../../common/faults.ts';
import { formatPath } from '../../common/migrations.ts';
import type { UpgradePhase } from '../../common/phases.ts';
import { portsOf, sameDescriptor, type LogRecord, type PortSet, type ServiceSource, type StateSnapshot } from '../../common/protocol.ts';
import { preciseNow, roundMs } from '../../common/time.ts';
import type { Bundle } from '../../release/bundler.ts';
import type { ServiceWorker } from '../service-worker.ts';
import type { SwapPath } from '../kernel-context.ts';
import { SwapError, type ServiceSwapReport, type SwapReport, type SwapTarget } from './report.ts';
import { ofService, planSwap, suspendWaves, type AddedPlan, type ServicePlan } from './swap-plan.ts';
import { ServiceHost } from '../service-host.ts';
import { addNewDependencies, channelTo, channelToPool } from '../wiring.ts';
import type { PoolHost } from '../pool-host.ts';
import { checkTransition, type TransitionTable } from '../../common/lifecycle.ts';

export type SwapState =
  | 'idle'
  | 'checking'
  | 'preparing'
  | 'suspending'
  | 'migrating'
  | 'switching'
  | 'retiring'
  | 'switched'
  | 'refused'
  | 'rolling-back'
  | 'rolled-back';

const allowedTransitions: TransitionTable<SwapState> = {
  idle: ['checking'],
  checking: ['preparing', 'refused'],
  preparing: ['suspending', 'rolling-back'],
  suspending: ['migrating', 'rolling-back'],
  migrating: ['switching', 'rolling-back'],
  switching: ['retiring'],
  retiring: ['switched'],
  switched: [],
  refused: [],
  'rolling-back': ['rolled-back'],
  'rolled-back': [],
};

const phaseOfState: Partial<Record<SwapState, UpgradePhase>> = {
  checking: 'check',
  preparing: 'prepare',
  suspending: 'suspend',
  migrating: 'migrate',
  switching: 'switch',
  retiring: 'switch',
};

/** What the swap needs from the kernel. */
export interface SwapEnvironment {
  hosts: ReadonlyMap<string, ServiceHost>;
  /** Pooled services: not swapped here (the kernel switches their pools); a stateful service may call them. */
  pools: ReadonlyMap<string, PoolHost>;
  pooledServices: ReadonlySet<string>;
  /** What each pool uses after the swap (its new code's, when the same swap changes it): a removal must not leave one calling nothing. */
  poolUses?: ReadonlyMap<string, readonly string[]>;
  /** Pools the same release removes: no service may still use them. */
  poolsLeaving?: ReadonlySet<string>;
  drainTimeoutMs: number;
  controlTimeoutMs: number;
  /** When a keyed store's pre-copy stops (KernelOptions.precopy, defaults filled in). */
  precopy: { maxRounds: number; stopAtKeys: number };
  /** How the state travels: straight from the old worker to the new one, or through the kernel. */
  swapPath: SwapPath;
  bundle(source: ServiceSource, service: string): Promise<Bundle>;
  /** Boots a worker that has loaded the bundle and reported its descriptor, but not started. */
  loadWorker(service: string, release: string, bundle: Bundle, source: ServiceSource): Promise<ServiceWorker>;
  log(level: LogRecord['level'], message: string, data?: unknown): void;
  /** Marks the host failed if this worker exits unexpectedly. */
  watch(host: ServiceHost, worker: ServiceWorker): void;
  /** Supervision: restart a service whose worker the swap had to end. */
  restart(host: ServiceHost, reason: string): void;
  /** A new worker died as it took over: its service is failed, or held for the revert when on probation. */
  lost(host: ServiceHost, reason: string): void;
  /** Resolves once no checkpoint of this service is being written by the kernel. */
  checkpointSettled(service: string): Promise<void>;
  /** Whether the kernel has a state folder: durability 'reply' needs one. */
  canWriteState: boolean;
  /** How long init() of an added service may take. */
  initTimeoutMs: number;
  /**
   * The state a service being added resumes from, brought to its code's vsn: what the kernel kept
   * when a release removed it (its checkpoint on disk, else in memory), or null for init().
   */
  keptState(host: ServiceHost): Promise<{ snapshot: StateSnapshot; release: string } | null>;
  /** In the switch turn: an added service joins the kernel's services; a removed one leaves them. */
  join(host: ServiceHost): void;
  leave(host: ServiceHost, release: string): void;
  /** The state a pre-copied swap switched in with (`at`: the switch), from the retiring old worker: kept for a restart and as the checkpoint after the swap. */
  keepSwitched(host: ServiceHost, snapshot: StateSnapshot | null, release: string, at: string): Promise<void>;
  /** A removed service stopped: its final state (if it handed one over) is kept for a release that brings it back. */
  keep(host: ServiceHost, stopped: { snapshot?: StateSnapshot; persisted?: boolean }): Promise<void>;
}

export class HotSwap {
  #state: SwapState = 'idle';
  #env: SwapEnvironment;
  #target: SwapTarget;
  #plans: ServicePlan[] = [];
  #unchanged: ServiceSwapReport[] = [];
  #added: AddedPlan[] = [];
  #removed: ServiceHost[] = [];
  /** Clients of removed services that the swapped code no longer uses: closed once those have drained. */
  #leftClients: PortSet['outbound'][string][] = [];
  /** Workers loaded to learn what new code declares; discarded if the check refuses the swap. */
  #loadedInCheck: ServiceWorker[] = [];
  #phaseStarted = 0;
  #phaseMs: Partial<Record<UpgradePhase, number>> = {};

  constructor(env: SwapEnvironment, target: SwapTarget) {
    this.#env = env;
    this.#target = target;
  }

  get state(): SwapState {
    return this.#state;
  }

  async run(): Promise<SwapReport> {
    const started = performance.now();
    try {
      this.#transition('checking');
      await this.#check();
      await this.#hangIfFaulted('check');
      this.#transition('preparing');
      await this.#prepare();
      await this.#hangIfFaulted('prepare');
      this.#transition('suspending');
      await this.#suspend();
      await this.#hangIfFaulted('suspend');
      this.#transition('migrating');
      await this.#migrate();
      await this.#hangIfFaulted('migrate');
    } catch (error) {
      const failure = this.#asPhaseError(error);
      if (this.#state === 'checking') {
        await Promise.all(this.#loadedInCheck.map((worker) => worker.terminate()));
        this.#transition('refused');
      } else {
        this.#transition('rolling-back');
        await this.#rollBack();
        this.#transition('rolled-back');
      }
      const report = this.#report(started, failure);
      this.#env.log('error', `swap to ${this.#target.release} ${report.outcome} in phase ${failure.phase}: ${failure.message}`, { code: failure.code });
      throw new SwapError(failure, report);
    }
    // From here the decision is made: every service switches. Nothing below can throw the swap
    // back, because the state now lives in the new workers.
    this.#transition('switching');
    await this.#switch();
    await this.#hangIfFaulted('switch');
    this.#transition('retiring');
    await this.#retire();
    this.#transition('switched');
    const lost = this.#plans.find((plan) => plan.outcome === 'failed-after-switch');
    if (lost) {
      const failure = theseusError('E_WORKER_EXITED', lost.host.name, this.#target.release, 'the switch', lost.host.failure ?? 'unknown');
      failure.phase = 'switch';
      failure.service = lost.host.name;
      const report = this.#report(started, failure);
      report.outcome = 'failed-after-switch';
      throw new SwapError(failure, report);
    }
    const report = this.#report(started, null);
    this.#env.log('info', `swap to ${this.#target.release} switched`, {
      pauses: Object.fromEntries(report.services.map((s) => [s.service, s.pauseMs])),
    });
    return report;
  }

  #hangIfFaulted(phase: UpgradePhase): Promise<void> {
    return hangIfFaulted(phase, (message) => this.#env.log('warn', message));
  }

  #transition(next: SwapState): void {
    checkTransition(allowedTransitions, 'a hot swap', this.#state, next);
    const now = performance.now();
    const phase = phaseOfState[this.#state];
    if (phase) {
      this.#phaseMs[phase] = roundMs((this.#phaseMs[phase] ?? 0) + now - this.#phaseStarted);
      // A phase has ended when the next state belongs to another: tell whoever shows progress.
      if (phaseOfState[next] !== phase) this.#target.onPhase?.({ phase, ms: this.#phaseMs[phase]!, ...this.#phaseDetail(phase) });
    }
    this.#phaseStarted = now;
    this.#state = next;
  }

  /** One line about a phase that ended, for live progress: each service's pause after the switch. */
  #phaseDetail(phase: UpgradePhase): { detail?: string } {
    if (phase !== 'switch') return {};
    const pauses = this.#plans.filter((plan) => plan.outcome === 'switched').map((plan) => `${plan.host.name} paused ${plan.pauseMs} ms`);
    return pauses.length > 0 ? { detail: pauses.join(', ') } : {};
  }

  #asPhaseError(error: unknown): TheseusError {
    return inPhase(error, phaseOfState[this.#state] ?? 'check');
  }

  // -------------------------------------------------------------------------------------------

  async #check(): Promise<void> {
    const planned = await planSwap(this.#env, this.#target, this.#loadedInCheck);
    this.#plans = planned.plans;
    this.#unchanged = planned.unchanged;
    this.#added = planned.added;
    this.#removed = planned.removed;
  }

  async #prepare(): Promise<void> {
    const results = await Promise.allSettled([
      ...this.#added.map((service) => this.#prepareAdded(service)),
      ...this.#plans.map(async (plan) => {
        plan.newWorker ??= await this.#env.loadWorker(plan.host.name, this.#target.release, plan.bundle, this.#target.services[plan.host.name]!);
        // The plan was made from what the code was said to declare; the code that actually loaded
        // must agree, or the migration paths checked are not the ones that would run.
        if (!sameDescriptor(plan.newWorker.descriptor, plan.newDescriptor)) {
          throw theseusError('E_DESCRIPTOR_MISMATCH', plan.host.name, this.#target.release, JSON.stringify(plan.newWorker.descriptor), JSON.stringify(plan.newDescriptor));
        }
        this.#openHandOff(plan);
      }),
    ]);
    const failed = results.find((result): result is PromiseRejectedResult => result.status === 'rejected');
    if (failed) throw failed.reason;
    await this.#precopy();
  }

  /**
   * Keyed stores go to their new workers while the old ones still serve: every entry, then the
   * keys written meanwhile, in rounds, until a round is small. What is written after that goes in
   * the pause. Part of prepare: a failure (a new worker's entry migration, say) rolls back with
   * nothing paused, and the old worker stops tracking when its channel closes.
   */
  async #precopy(): Promise<void> {
    // maxRounds 0 turns it off: the store then goes whole, in the pause (stop-and-copy).
    if (this.#env.precopy.maxRounds === 0) return;
    const keyed = this.#plans.filter((plan) => plan.handoff !== null && plan.oldDescriptor.keyed === true && plan.newDescriptor.keyed === true);
    // Not settled first, unlike suspend: nothing is handed over before the pause, so the roll-back
    // may start at the first failure; ending the new workers closes the other copies' channels.
    await Promise.all(keyed.map((plan) => this.#precopyOne(plan)));
  }

  async #precopyOne(plan: ServicePlan): Promise<void> {
    const handoff = plan.handoff!;
    plan.handoff = null;
    const started = preciseNow();
    const copied = plan.oldWorker.request(
      'precopy',
      { handoff, snapshotVsn: this.#snapshotVsn(plan), maxRounds: this.#env.precopy.maxRounds, smallEnough: this.#env.precopy.stopAtKeys },
      this.#precopyTimeoutMs(),
      [handoff],
    );
    // Its answer no longer matters once the new worker has failed: never an unhandled rejection.
    copied.catch(() => undefined);
    // The new worker migrates each entry as it arrives: if one fails, its migrate request fails
    // now, and the swap rolls back without waiting for the copy to end.
    const newWorkerFailed = plan.migration!.then(() => {
      throw theseusError('E_INTERNAL', `${plan.host.name}@${this.#target.release} finished its migration before its store's copy did`);
    });
    plan.precopy = await Promise.race([copied, newWorkerFailed]).catch(async (error: unknown) => {
      // The old worker's copy stops when the new worker's end closes: the new worker's own
      // failure says why, and it is on its way. Prefer it, if it comes soon.
      if (!(error instanceof TheseusError && error.code === 'E_PRECOPY_ABORTED')) throw error;
      throw await Promise.race([plan.migration!.then(() => error, (reason: unknown) => reason), delay(this.#env.controlTimeoutMs).then(() => error)]);
    });
    plan.steps.precopyMs = preciseNow() - started;
    this.#env.log('debug', `${plan.host.name} pre-copied its store`, plan.precopy);
  }

  /** A pre-copy of a big store on a loaded machine takes seconds: its bound is the control timeout, six times over. */
  #precopyTimeoutMs(): number {
    return 6 * this.#env.controlTimeoutMs;
  }

  /** The vsn the snapshot leaves the old worker at: down-migrated there on a downgrade, as it is on an upgrade. */
  #snapshotVsn(plan: ServicePlan): string {
    return plan.direction === 'down' ? plan.newDescriptor.vsn : plan.oldDescriptor.vsn;
  }

  /**
   * The channel the old worker sends its state on as it suspends, and the new worker's migrate
   * request that waits on it. Sent now, before the pause, the request is also the new worker's
   * first control message, whose first delivery costs a fresh thread over a millisecond here.
   */
  #openHandOff(plan: ServicePlan): void {
    // Through the kernel, the state comes back in the suspend answer and goes out in migrate.
    if (this.#env.swapPath === 'through-kernel') return;
    const { port1, port2 } = new MessageChannel();
    plan.handoff = port1;
    // It may wait through the suspend of every service before it (each up to the drain timeout
    // plus the kernel's backstop), then for its own migration.
    const timeoutMs = this.#precopyTimeoutMs() + this.#plans.length * (this.#env.drainTimeoutMs + this.#env.controlTimeoutMs) + this.#env.controlTimeoutMs;
    plan.migration = plan.newWorker!.request('migrate', { handoff: port2 }, timeoutMs, [port2]);
    // Read in the migrate phase; a swap that rolls back earlier ends the worker, which rejects it.
    plan.migration.catch(() => undefined);
  }

  /**
   * A service the release adds: its worker boots, gets its clients of what it uses (the running
   * services answer them from now on; another added one from the switch) and its state, from what
   * the kernel kept of it or from init(). Nobody can call it before the switch.
   */
  async #prepareAdded(service: AddedPlan): Promise<void> {
    const { name, source, bundle } = service;
    const worker = (service.worker ??= await this.#env.loadWorker(name, this.#target.release, bundle, source));
    if (!sameDescriptor(worker.descriptor, service.descriptor)) {
      throw ofService(name, theseusError('E_DESCRIPTOR_MISMATCH', name, this.#target.release, JSON.stringify(worker.descriptor), JSON.stringify(service.descriptor)));
    }
    const host = (service.host = new ServiceHost(name, worker, source, bundle, this.#env.controlTimeoutMs));
    const outbound: PortSet['outbound'] = {};
    for (const dependency of worker.descriptor.uses) {
      const toPool = channelToPool(dependency, this.#env.pools);
      if (toPool) {
        outbound[dependency] = toPool.caller;
        toPool.attach();
        continue;
      }
      const addedCallee = this.#added.find((other) => other.name === dependency);
      const callee = addedCallee ? { descriptor: addedCallee.descriptor } : this.#env.hosts.get(dependency)!;
      const { caller, service: end } = channelTo(callee);
      outbound[dependency] = caller;
      if (addedCallee) addedCallee.inbound.push(end);
      else this.#env.hosts.get(dependency)!.attachCaller(end);
    }
    const kept = await this.#env.keptState(host).catch((error: unknown) => Promise.reject(ofService(name, error)));
    if (kept) {
      host.lastSnapshot = { snapshot: { vsn: kept.snapshot.vsn, bytes: kept.snapshot.bytes.slice() }, release: kept.release, at: new Date().toISOString() };
      service.origin = `resumed from the state kept from ${kept.release} (vsn ${kept.snapshot.vsn})`;
      service.stateBytes = kept.snapshot.bytes.byteLength;
      service.outbound = outbound;
      await worker.request('migrate', { snapshot: kept.snapshot }, this.#env.controlTimeoutMs, [kept.snapshot.bytes.buffer as ArrayBuffer]);
      return;
    }
    service.origin = 'started from init()';
    await worker.request('init', { ports: { inbound: [], outbound } }, this.#env.initTimeoutMs).catch((error: unknown) => {
      if (error instanceof TheseusError && error.code === 'E_CONTROL_TIMEOUT') throw ofService(name, theseusError('E_INIT_TIMEOUT', name, this.#target.release, this.#env.initTimeoutMs));
      throw ofService(name, error);
    });
  }

  async #suspend(): Promise<void> {
    for (const wave of suspendWaves(this.#plans)) {
      // Settled, not raced: a roll-back must find every suspend of the wave answered (ports back
      // with the kernel) or failed, never one still on its way.
      const results = await Promise.allSettled(wave.map((plan) => this.#suspendOne(plan)));
      const failed = results.find((result): result is PromiseRejectedResult => result.status === 'rejected');
      if (failed) throw failed.reason;
    }
  }

  async #suspendOne(plan: ServicePlan): Promise<void> {
    plan.host.transition('swapping');
    // A checkpoint the kernel began before the swap must land before the new worker, which may
    // write the file itself (durability 'reply'), can: one writer per file at a time. None
    // starts from here on, as the host is no longer running.
    await this.#env.checkpointSettled(plan.host.name);
    plan.suspendedAt = performance.now();
    // On a downgrade the old (newer) code migrates down before the snapshot leaves it; on an
    // upgrade the snapshot leaves as it is and the new code migrates it up.
    const snapshotVsn = this.#snapshotVsn(plan);
    plan.steps.suspendSent = preciseNow();
    // Null after a pre-copy (the old worker already holds the channel), and on the path through the kernel.
    const handoff = plan.handoff;
    plan.handoff = null;
    const suspended = await plan.oldWorker
      .request(
        'suspend',
        { drainTimeoutMs: this.#env.drainTimeoutMs, snapshotVsn, ...(handoff ? { handoff } : {}) },
        this.#env.drainTimeoutMs + this.#env.controlTimeoutMs,
        handoff ? [handoff] : [],
      )
      .catch((error: unknown) => {
        if (error instanceof TheseusError && error.code === 'E_CONTROL_TIMEOUT') plan.suspendTimedOut = true;
        throw error;
      });
    const { ports, callsServed, castsServed, stoppedAt, drainedAt, snapshotAt } = suspended;
    Object.assign(plan.steps, { stoppedAt, drainedAt, snapshotAt, suspendAnswered: preciseNow() });
    plan.ports = ports;
    plan.carried = ports.queued?.length ?? 0;
    plan.stoppedAt = stoppedAt;
    plan.drainedAt = drainedAt;
    plan.served = { calls: callsServed, casts: castsServed };
    if (suspended.snapshot) {
      // No hand-off channel: the state came to the kernel, which sends it on in migrate.
      plan.snapshot = suspended.snapshot;
      plan.stateBytes = suspended.snapshot.bytes.byteLength;
    }
  }

  async #migrate(): Promise<void> {
    await Promise.all(
      this.#plans.map(async (plan) => {
        if (!plan.migration) {
          // Through the kernel: it keeps a copy for a restart and sends the state on.
          const snapshot = plan.snapshot!;
          plan.steps.migrateSent = preciseNow();
          plan.snapshot = { vsn: snapshot.vsn, bytes: snapshot.bytes.slice() };
          plan.steps.copyKept = preciseNow();
          plan.migration = plan.newWorker!.request('migrate', { snapshot }, this.#env.controlTimeoutMs, [snapshot.bytes.buffer as ArrayBuffer]);
        }
        // The request was sent in prepare with a bound long enough for every suspend before it; from
        // here, with the state handed over, a migration gets the control timeout, as it always did.
        const answer = await Promise.race([
          plan.migration,
          delay(this.#env.controlTimeoutMs).then(() => {
            throw theseusError('E_CONTROL_TIMEOUT', `${plan.host.name}@${this.#target.release}`, 'migrate', this.#env.controlTimeoutMs);
          }),
        ]);
        // The snapshot comes back with the answer and stays with the kernel: if the new worker
        // crashes before its first checkpoint, supervision restarts it from the state it was
        // switched in with, not an older one. Its bytes were moved, never copied, on the way.
        plan.snapshot = answer.snapshot ?? plan.snapshot;
        plan.stateBytes = answer.stateBytes;
        Object.assign(plan.steps, { migrateReceived: answer.receivedAt, adopted: answer.adoptedAt, migrateAnswered: preciseNow() });
      }),
    ).catch((error: unknown) => {
      if (error instanceof TheseusError) {
        error.phase = 'migrate';
      }
      throw error;
    });
  }

  async #switch(): Promise<void> {
    const { hosts } = this.#env;
    // Pass 0: removed services leave; the main thread's new calls to them are refused from now on,
    // and what was sent before is still answered as they drain (retire). Added ones join, not yet open.
    for (const host of this.#removed) this.#env.leave(host, this.#target.release);
    for (const service of this.#added) this.#env.join(service.host!);
    // Pass 1: the hosts point at the new workers, so anything asking from now on sees new code.
    for (const plan of this.#plans) {
      plan.host.current = plan.newWorker!;
      if (plan.snapshot) plan.host.lastSnapshot = { snapshot: plan.snapshot, release: this.#target.release, at: new Date().toISOString() };
      if (plan.precopy) {
        // No whole copy of the state came through a pre-copied swap: the old worker, which still
        // holds the state the new one was switched in with, gives it as it retires. A restart
        // before then waits for it.
        plan.switchedAt = new Date().toISOString();
        plan.host.pendingSnapshot = new Promise<void>((resolve) => (plan.settlePending = resolve));
      }
      plan.snapshot = null;
      this.#env.watch(plan.host, plan.newWorker!);
      plan.host.servedByRetired.calls += plan.served.calls;
      plan.host.servedByRetired.casts += plan.served.casts;
      plan.host.bundle = plan.bundle;
      plan.host.source = this.#target.services[plan.host.name]!;
      plan.host.onProbation = this.#target.probation === true;
      plan.host.transition('running');
    }
    // Pass 2, in the same synchronous turn: each new worker gets its ports, with the method
    // tables of the (possibly also new) services it calls.
    const acks: Array<Promise<unknown>> = [];
    const newChannels: Array<() => void> = [];
    for (const plan of this.#plans) {
      const ports = plan.ports!;
      ports.inbound.push(...plan.host.takeHeldCallers());
      for (const [name, entry] of Object.entries(ports.outbound)) {
        if (this.#removed.some((host) => host.name === name)) {
          // The new code does not use it (the check made sure): closed once its calls have drained.
          this.#leftClients.push(entry);
          delete ports.outbound[name];
          continue;
        }
        entry.methods = methodTable((hosts.get(name) ?? this.#env.pools.get(name))?.descriptor ?? entry.methods);
      }
      // The new code calls services the old code did not: fresh channels to them.
      newChannels.push(...addNewDependencies(ports, plan.newDescriptor, hosts, this.#env.pools));
      plan.steps.switchSent = preciseNow();
      acks.push(
        plan.newWorker!.request('switch', { ports }, this.#env.controlTimeoutMs).catch((error: unknown) => {
          // If the request never left, the ports are still here: close them so callers are told.
          for (const port of portsOf(ports)) port.close();
          throw error;
        }).then(({ receivedAt, servingAt }) => {
          Object.assign(plan.steps, { switchReceived: receivedAt, servingAt });
          // Measured where it happens: from the old worker's last taken message to the new
          // worker listening, both stamped in their own threads.
          plan.pauseMs = roundMs(servingAt - plan.stoppedAt);
          plan.outcome = 'switched';
        }),
      );
      plan.ports = null;
      plan.host.updateMethodTables();
    }
    for (const attach of newChannels) attach();
    // The added services open, with every caller that has a channel to them by now.
    for (const service of this.#added) {
      const host = service.host!;
      const ports: PortSet = { inbound: [...service.inbound, ...host.takeInitialCallers()], outbound: service.outbound };
      service.inbound = [];
      this.#env.watch(host, host.current);
      host.onProbation = this.#target.probation === true;
      host.transition('running');
      acks.push(
        host.current.request('switch', { ports }, this.#env.controlTimeoutMs).then(
          () => {
            service.outcome = 'switched';
          },
          (error: unknown) => {
            for (const port of portsOf(ports)) port.close();
            service.outcome = 'failed-after-switch';
            this.#env.log('error', `${host.name}@${this.#target.release} failed as it opened: ${errorMessage(error)}`);
            this.#env.lost(host, `its worker failed as it opened: ${errorMessage(error)}`);
          },
        ),
      );
    }
    try {
      this.#target.onSwitch?.();
    } catch (error) {
      // The switch is decided: a failing hook is reported, never allowed to throw it back.
      this.#env.log('error', `swap to ${this.#target.release}: the switch hook failed: ${errorMessage(error)}`);
    }
    // Services that call a switched one learn its new calls and casts.
    const switched = new Set(this.#plans.map((plan) => plan.host.name));
    for (const host of hosts.values()) {
      if (host.state !== 'running' || switched.has(host.name)) continue;
      for (const dependency of host.descriptor.uses) {
        if (!switched.has(dependency)) continue;
        void host.current
          .request('peer', { service: dependency, methods: methodTable(hosts.get(dependency)!.descriptor) }, this.#env.controlTimeoutMs)
          .catch(() => undefined);
      }
    }
    const results = await Promise.allSettled(acks);
    for (const plan of this.#plans) this.#logSteps(plan);
    results.forEach((result, index) => {
      if (result.status === 'rejected') {
        const plan = this.#plans[index]!;
        plan.outcome = 'failed-after-switch';
        this.#env.log('error', `${plan.host.name}@${this.#target.release} failed right after the switch: ${errorMessage(result.reason)}`);
        // Failed for good, or, on probation, held for the revert like any crash of the new code.
        this.#env.lost(plan.host, `its new worker failed as it took over: ${errorMessage(result.reason)}`);
      }
    });
  }

  /** Where the pause went: each step's stamp in ms after the old worker stopped taking messages. */
  #logSteps(plan: ServicePlan): void {
    const from = plan.steps.stoppedAt;
    if (from === undefined) return;
    const offsets = Object.entries(plan.steps)
      .sort(([, a], [, b]) => a - b)
      .map(([step, at]) => [step, roundMs(at - from)]);
    this.#env.log('debug', `${plan.host.name} pause steps`, Object.fromEntries(offsets));
  }

  async #retire(): Promise<void> {
    await Promise.all([
      ...this.#removed.map((host) => this.#retireRemoved(host)),
      ...this.#plans.map(async (plan) => {
        const old = plan.oldWorker;
        old.expectExit();
        // The old code must really go away: an ES module cannot be unloaded from an isolate, so
        // only the end of its thread frees it.
        const keepsState = plan.settlePending !== null;
        const stopped = await old
          .request('stop', { runTerminate: false, reason: 'replaced', drainTimeoutMs: 0, snapshot: keepsState, snapshotVsn: this.#snapshotVsn(plan) }, this.#env.controlTimeoutMs)
          .catch((error: unknown) => {
            if (keepsState) this.#env.log('warn', `${plan.host.name}: the retiring worker gave no state (${errorMessage(error)}); a restart before the next checkpoint starts from the one before the swap`);
            return {};
          });
        if (keepsState) await this.#keepSwitchedState(plan, stopped);
        const exited = await Promise.race([old.exited.then(() => true), delay(this.#env.controlTimeoutMs).then(() => false)]);
        if (!exited) await old.terminate();
        plan.host.lastSwap = {
          fromRelease: plan.fromRelease,
          toRelease: this.#target.release,
          at: Date.now(),
          pauseMs: plan.pauseMs,
          outcome: plan.outcome,
        };
      }),
    ]);
    // Every removed service has answered what it was sent: the clients the old code had of them go.
    for (const entry of this.#leftClients) entry.port.close();
    this.#leftClients = [];
  }

  async #keepSwitchedState(plan: ServicePlan, stopped: { snapshot?: StateSnapshot; persisted?: boolean }): Promise<void> {
    try {
      // In durability 'reply' the new worker has written the state itself. When the retiring
      // worker could not give it (its stop failed), the new worker is checkpointed instead, whole
      // store and all: costly in the serving thread, but no answered write is left behind.
      if (!stopped.persisted) await this.#env.keepSwitched(plan.host, stopped.snapshot ?? null, plan.fromRelease, plan.switchedAt!);
    } finally {
      plan.host.pendingSnapshot = null;
      plan.settlePending?.();
      plan.settlePending = null;
    }
  }

  /**
   * A removed service drains like a stopping one: it serves what its callers sent before the
   * switch (their new code sends it nothing more), runs terminate(), and hands over its final
   * state, which the kernel keeps for a release that brings it back. Its main thread's clients
   * then reject what is left with E_SERVICE_REMOVED.
   */
  async #retireRemoved(host: ServiceHost): Promise<void> {
    const reason = `release ${this.#target.release} removed it`;
    const worker = host.current;
    const wasServing = host.state === 'running';
    await this.#env.checkpointSettled(host.name);
    host.transition('stopping');
    worker.expectExit();
    if (wasServing) {
      const stopped = await worker
        .request('stop', { runTerminate: true, reason, drainTimeoutMs: this.#env.drainTimeoutMs, snapshot: true }, this.#env.drainTimeoutMs + this.#env.controlTimeoutMs)
        .catch((error: unknown) => {
          this.#env.log('warn', `${host.name} did not stop cleanly as ${reason}: ${errorMessage(error)}; its last checkpoint is kept`);
          return {};
        });
      await this.#env.keep(host, stopped);
    }
    host.closeClients(reason, 'E_SERVICE_REMOVED');
    const exited = await Promise.race([worker.exited.then(() => true), delay(this.#env.controlTimeoutMs).then(() => false)]);
    if (!exited) await worker.terminate();
    host.transition('stopped');
    this.#env.log('info', `${host.name} removed by ${this.#target.release}; its last state is kept`);
  }

  async #rollBack(): Promise<void> {
    // An added service never opened: ending its worker closes its clients of the running ones.
    await Promise.all(this.#added.map((service) => service.worker?.terminate()));
    for (const plan of this.#plans) {
      // Never given to an old worker: closing it tells the new one (ended below) nothing is coming.
      plan.handoff?.close();
      plan.handoff = null;
      if (plan.suspendTimedOut) {
        // The worker enforces the drain timeout itself, so missing the kernel's backstop as well
        // means it is blocked (a synchronous loop). Its ports may still come back at any time,
        // so it cannot be trusted with them: end it, which closes them and rejects its callers'
        // pending calls instead of leaving them hanging.
        await plan.oldWorker.terminate();
        const reason = `it did not answer suspend within ${this.#env.drainTimeoutMs + this.#env.controlTimeoutMs} ms and was ended`;
        this.#env.log('error', `${plan.host.name}: ${reason}`);
        // Its callers' channels died with it: supervision restarts it on new ones, and the calls
        // that never started are sent again.
        plan.host.transition('running');
        this.#env.restart(plan.host, reason);
        await plan.newWorker?.terminate();
        continue;
      }
      if (plan.ports) {
        // The old worker suspended and handed over its ports: give them back, with any callers
        // that arrived meanwhile. Its state was never touched.
        const ports = plan.ports;
        plan.ports = null;
        ports.inbound.push(...plan.host.takeHeldCallers());
        try {
          await plan.oldWorker.request('resume', { ports }, this.#env.controlTimeoutMs);
        } catch (error) {
          // Nobody can serve these ports now: close them so their callers get E_SERVICE_DOWN.
          for (const port of portsOf(ports)) port.close();
          plan.host.transition('failed');
          plan.host.failure = `could not resume after a failed swap: ${errorMessage(error)}`;
          this.#env.log('error', `${plan.host.name}: ${plan.host.failure}`);
        }
      }
      if (plan.oldWorker.lifecycle === 'exited' && plan.host.state === 'swapping') {
        // The old worker died during the swap: its callers' channels died with it. Supervision
        // restarts it on new ones (held callers included), from its last state.
        plan.host.transition('running');
        this.#env.restart(plan.host, `it exited during the swap: ${plan.oldWorker.exitReason}`);
      }
      if (plan.host.state === 'swapping') {
        plan.host.transition('running');
        for (const link of plan.host.takeHeldCallers()) plan.host.attachCaller(link);
      }
      if (plan.outcome === 'not-started' && plan.suspendedAt > 0) plan.outcome = 'rolled-back';
      await plan.newWorker?.terminate();
    }
  }

  #report(started: number, failure: TheseusError | null): SwapReport {
    const services: ServiceSwapReport[] = this.#plans.map((plan) => ({
      service: plan.host.name,
      from: { release: plan.fromRelease, vsn: plan.oldDescriptor.vsn },
      to: { release: this.#target.release, vsn: plan.newDescriptor.vsn },
      change: plan.settingsOnly ? 'config' : plan.oldDescriptor.vsn !== plan.newDescriptor.vsn ? 'vsn' : 'code',
      migration:
        plan.path.length === 0
          ? 'none'
          : `${formatPath(plan.path)} (${plan.direction}, in ${plan.direction === 'up' ? this.#target.release : plan.fromRelease})`,
      stateBytes: plan.stateBytes,
      pauseMs: plan.pauseMs,
      drainMs: plan.drainedAt > 0 ? roundMs(plan.drainedAt - plan.stoppedAt) : 0,
      carried: plan.carried,
      ...(plan.precopy ? { precopy: plan.precopy } : {}),
      outcome: plan.outcome,
    }));
    const swapped = this.#state === 'switched';
    for (const service of this.#added) {
      services.push({
        service: service.name,
        from: { release: '-', vsn: '-' },
        to: { release: this.#target.release, vsn: service.descriptor.vsn },
        change: 'added',
        migration: service.host ? service.origin : 'none',
        stateBytes: service.stateBytes,
        pauseMs: 0,
        drainMs: 0,
        carried: 0,
        outcome: swapped ? service.outcome : service.host ? 'rolled-back' : 'not-started',
      });
    }
    for (const host of this.#removed) {
      services.push({
        service: host.name,
        from: { release: host.release, vsn: host.descriptor.vsn },
        to: { release: this.#target.release, vsn: '-' },
        change: 'removed',
        migration: 'none; its last state is kept',
        stateBytes: 0,
        pauseMs: 0,
        drainMs: 0,
        carried: 0,
        outcome: swapped ? 'switched' : 'not-started',
      });
    }
    const report: SwapReport = {
      release: this.#target.release,
      outcome: swapped ? 'switched' : this.#state === 'refused' ? 'refused' : 'rolled-back',
      services: [...services, ...this.#unchanged],
      phaseMs: this.#phaseMs,
      totalMs: roundMs(performance.now() - started),
    };
    if (failure) {
      report.failedPhase = failure.phase!;
      report.error = { code: failure.code, message: failure.message };
    }
    return report;
  }
}

function methodTable(descriptor: { calls: readonly string[]; casts: readonly string[] }) {
  return { calls: [...descriptor.calls], casts: [...descriptor.casts] };
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
