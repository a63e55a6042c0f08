// The check phase of a service swap: what the target's code declares, and for each service the
// plan (old and new worker, migration path, direction) or the reason it cannot be swapped.
// Nothing running is touched here; workers loaded to learn what new code declares are handed back
// in `loaded`, for the swap to reuse or discard. Runs in the kernel's main thread.

import semver from 'semver';
import type { MessagePort } from 'node:worker_threads';
import { TheseusError, inPhase, theseusError } from '../../common/errors.ts';
import { findMigrationPath, type MigrationStep } from '../../common/migrations.ts';
import { sameSettings, type ControlRequests, type InboundLink, type PortSet, type ServiceDescriptor, type ServiceSource, type StateSnapshot } from '../../common/protocol.ts';
import type { Bundle } from '../../release/bundler.ts';
import type { ServiceHost } from '../service-host.ts';
import type { ServiceWorker } from '../service-worker.ts';
import type { SwapEnvironment } from './hot-swap.ts';
import type { ServiceSwapReport, SwapTarget } from './report.ts';

/** One service's swap, from the check to its outcome. */
export interface ServicePlan {
  host: ServiceHost;
  fromRelease: string;
  bundle: Bundle;
  oldWorker: ServiceWorker;
  oldDescriptor: ServiceDescriptor;
  newDescriptor: ServiceDescriptor;
  direction: 'up' | 'down';
  path: MigrationStep[];
  newWorker: ServiceWorker | null;
  /** The ports the old worker handed over; null while the old worker holds them. */
  ports: PortSet | null;
  /**
   * The old worker's serialized state as the new worker received it, kept by the kernel from the
   * migrate phase to the switch (then host.lastSnapshot, for a restart).
   */
  snapshot: StateSnapshot | null;
  /**
   * The kernel's end of the hand-off channel, made in prepare, until suspend gives it to the old
   * worker; the new worker holds the other end in its pending migrate request.
   */
  handoff: MessagePort | null;
  /** What the pre-copy of a keyed store sent while the old worker served; null when there was none. */
  precopy: ControlRequests['precopy']['response'] | null;
  /** After a pre-copied switch: when it happened, and what tells a waiting restart that the old worker's state is kept. */
  switchedAt: string | null;
  settlePending: (() => void) | null;
  /** The new worker's migrate request, sent in prepare, answered once the handed-off state is adopted. */
  migration: Promise<ControlRequests['migrate']['response']> | null;
  /** What the old worker had served when it suspended, carried into the host's totals. */
  served: { calls: number; casts: number };
  suspendedAt: number;
  /** The old worker missed even the kernel's backstop for suspend: it is blocked. */
  suspendTimedOut: boolean;
  /** When the old worker stopped starting handlers, and when its running one had finished (epoch ms, stamped in its thread). */
  stoppedAt: number;
  drainedAt: number;
  /** Each step of the pause, stamped where it happened (epoch ms): logged at debug level after the switch. */
  steps: Record<string, number>;
  stateBytes: number;
  pauseMs: number;
  /** Only the config or static files changed: the same code, swapped for the new settings. */
  settingsOnly: boolean;
  carried: number;
  outcome: ServiceSwapReport['outcome'];
}

/** A service the target release adds: booted and given its state in prepare, opened at the switch. */
export interface AddedPlan {
  name: string;
  source: ServiceSource;
  bundle: Bundle;
  descriptor: ServiceDescriptor;
  /** Loaded in check (no manifest said what the code declares) or in prepare. */
  worker: ServiceWorker | null;
  /** Made in prepare; registered with the kernel in the switch turn. */
  host: ServiceHost | null;
  /** Where its state came from, as the report says it: init(), or the state the kernel kept of it. */
  origin: string;
  stateBytes: number;
  /** Callers' service ends made before it is registered (another added service that uses it). */
  inbound: InboundLink[];
  /** Its clients of the services it uses, when they were not handed over with init. */
  outbound: PortSet['outbound'];
  outcome: ServiceSwapReport['outcome'];
}

/**
 * Refuses a target that names a release already running with other code or settings: the two
 * could not be told apart in reports, logs and checkpoints. Checked for both kinds of service.
 */
export function refuseSameReleaseOtherCode(service: string, running: string, target: string): void {
  if (running !== target) return;
  throw inPhase(
    theseusError('E_BAD_OPTIONS', `release ${target}`, `${service} is already running release ${running} with different code or settings; bump the release version so the two can be told apart`),
    'check',
  );
}

/**
 * Plans the swap of every service `target` names: the ones to swap, ordered for suspension, and
 * the ones whose code and settings are unchanged (reported, not touched).
 */
export async function planSwap(
  env: SwapEnvironment,
  target: SwapTarget,
  loaded: ServiceWorker[],
): Promise<{ plans: ServicePlan[]; unchanged: ServiceSwapReport[]; added: AddedPlan[]; removed: ServiceHost[] }> {
  const plans: ServicePlan[] = [];
  const unchanged: ServiceSwapReport[] = [];
  const added: AddedPlan[] = [];
  const { hosts } = env;
  // The release version is valid: service-swap.ts checked it for stateful and pooled alike.
  for (const name of Object.keys(target.services)) {
    const host = hosts.get(name);
    if (!host) {
      // Only a target that names the whole release adds services: elsewhere a name not running is a typo.
      if (!target.complete || env.pooledServices.has(name)) throw theseusError('E_UNKNOWN_SERVICE', name, [...hosts.keys()].join(', '));
      continue;
    }
    if (host.state !== 'running') {
      throw ofService(name, theseusError('E_SERVICE_NOT_RUNNING', name, host.state));
    }
  }
  // A service the whole release no longer names leaves, whatever its state: it has no successor.
  const removed = target.complete ? [...hosts.values()].filter((host) => !Object.hasOwn(target.services, host.name)) : [];
  for (const host of removed) {
    // Being restarted or swapped, its worker is in flux: a removal waits for it to settle.
    if (!['running', 'crashed', 'failed'].includes(host.state)) throw ofService(host.name, theseusError('E_SERVICE_NOT_RUNNING', host.name, host.state));
  }
  // What the new code declares: from the release manifest when there is one; otherwise the new
  // module is loaded (not started) in its own worker, which prepare then reuses.
  const inspected = await Promise.allSettled(
    Object.entries(target.services).map(async ([name, spec]) => {
      const bundle = await env.bundle(spec, name);
      const host = hosts.get(name);
      if (!host) {
        const worker = spec.descriptor ? null : await env.loadWorker(name, target.release, bundle, spec);
        if (worker) loaded.push(worker);
        added.push({ name, source: spec, bundle, descriptor: spec.descriptor ?? worker!.descriptor, worker, host: null, origin: 'started from init()', stateBytes: 0, inbound: [], outbound: {}, outcome: 'not-started' });
        return null;
      }
      if (bundle.sha256 === host.bundle.sha256) {
        // The same code declares the same things; only new settings make it a change.
        return { name, bundle, descriptor: sameSettings(spec, host.source) ? null : host.descriptor, worker: null };
      }
      if (spec.descriptor) return { name, bundle, descriptor: spec.descriptor, worker: null };
      const worker = await env.loadWorker(name, target.release, bundle, spec);
      loaded.push(worker);
      return { name, bundle, descriptor: worker.descriptor, worker };
    }),
  );
  const failed = inspected.find((result): result is PromiseRejectedResult => result.status === 'rejected');
  if (failed) throw failed.reason;
  for (const result of inspected) {
    const value = (result as PromiseFulfilledResult<{ name: string; bundle: Bundle; descriptor: ServiceDescriptor | null; worker: ServiceWorker | null } | null>).value;
    if (value === null) continue;
    const { name, bundle, descriptor, worker } = value;
    const host = hosts.get(name)!;
    const fromRelease = host.release;
    if (descriptor === null) {
      unchanged.push({
        service: name,
        from: { release: fromRelease, vsn: host.descriptor.vsn },
        to: { release: fromRelease, vsn: host.descriptor.vsn },
        change: 'none',
        migration: 'none',
        stateBytes: 0,
        pauseMs: 0,
        drainMs: 0,
        carried: 0,
        outcome: 'unchanged',
      });
      continue;
    }
    refuseSameReleaseOtherCode(name, fromRelease, target.release);
    const direction = semver.gte(target.release, fromRelease) ? 'up' : 'down';
    const oldDescriptor = host.descriptor;
    if ((oldDescriptor.keyed === true) !== (descriptor.keyed === true)) {
      const words = (keyed: boolean | undefined) => (keyed ? 'keyed' : 'not keyed');
      throw ofService(name, theseusError('E_KEYED_CHANGED', name, words(oldDescriptor.keyed), words(descriptor.keyed)));
    }
    // Up migrations run in the new code; down migrations in the code being left (the newer one).
    const migrationsFrom = direction === 'up' ? descriptor : oldDescriptor;
    const path = findMigrationPath(migrationsFrom.migrations, oldDescriptor.vsn, descriptor.vsn, direction);
    if (!path) {
      const where = direction === 'up' ? `${name}@${target.release}` : `${name}@${fromRelease}`;
      throw ofService(name, theseusError('E_NO_MIGRATION_PATH', name, oldDescriptor.vsn, descriptor.vsn, direction, where));
    }
    if (target.services[name]!.durability === 'reply' && !env.canWriteState) {
      throw ofService(name, theseusError('E_BAD_OPTIONS', `service '${name}' of release ${target.release}`, "durability 'reply' writes the state to disk before each reply, so the kernel needs a stateDir"));
    }
    plans.push({
      host,
      fromRelease,
      bundle,
      oldWorker: host.current,
      oldDescriptor,
      newDescriptor: descriptor,
      direction,
      path,
      newWorker: worker,
      ports: null,
      snapshot: null,
      served: { calls: 0, casts: 0 },
      suspendedAt: 0,
      suspendTimedOut: false,
      stoppedAt: 0,
      drainedAt: 0,
      steps: {},
      handoff: null,
      precopy: null,
      switchedAt: null,
      settlePending: null,
      migration: null,
      stateBytes: 0,
      pauseMs: 0,
      settingsOnly: bundle.sha256 === host.bundle.sha256,
      carried: 0,
      outcome: 'not-started',
    });
  }
  for (const service of added) {
    if (service.source.durability === 'reply' && !env.canWriteState) {
      throw ofService(service.name, theseusError('E_BAD_OPTIONS', `service '${service.name}' of release ${target.release}`, "durability 'reply' writes the state to disk before each reply, so the kernel needs a stateDir"));
    }
  }
  checkWiring(env, target.release, plans, added, removed);
  if (plans.length === 0 && added.length === 0 && removed.length === 0) throw theseusError('E_SWAP_NOTHING_TO_DO', target.release);
  return { plans: suspendOrder(plans), unchanged, added, removed };
}

/**
 * Who uses whom once the swap is through: every service a service or pool uses (in its new code,
 * when this swap changes or adds it) runs after it, and nothing that stays uses one that leaves.
 */
function checkWiring(env: SwapEnvironment, release: string, plans: ServicePlan[], added: AddedPlan[], removed: ServiceHost[]): void {
  const leaving = new Set(removed.map((host) => host.name));
  const after = new Set([...[...env.hosts.keys()].filter((name) => !leaving.has(name)), ...added.map((service) => service.name), ...env.pooledServices]);
  const usesAfter = new Map<string, readonly string[]>();
  for (const host of env.hosts.values()) if (!leaving.has(host.name)) usesAfter.set(host.name, host.descriptor.uses);
  for (const [name, pool] of env.pools) usesAfter.set(name, env.poolUses?.get(name) ?? pool.descriptor.uses);
  for (const plan of plans) usesAfter.set(plan.host.name, plan.newDescriptor.uses);
  for (const service of added) usesAfter.set(service.name, service.descriptor.uses);
  for (const leaver of [...leaving, ...(env.poolsLeaving ?? [])]) {
    const users = [...usesAfter].filter(([, uses]) => uses.includes(leaver)).map(([name]) => name);
    if (users.length > 0) throw ofService(users[0]!, theseusError('E_REMOVED_STILL_USED', release, leaver, users.join(', ')));
  }
  for (const [name, uses] of usesAfter) {
    for (const dependency of uses) {
      if (!after.has(dependency)) throw ofService(name, theseusError('E_UNKNOWN_DEPENDENCY', `${name}@${release}`, dependency));
    }
  }
}

/**
 * The plans (in suspend order) grouped into waves that may suspend at the same time: a service
 * goes in the wave after the last of its callers that come before it in that order. Services
 * that do not call each other suspend together, so ten of them pause for about one suspend, not ten.
 */
export function suspendWaves(ordered: readonly ServicePlan[]): ServicePlan[][] {
  const waveOf = new Map<ServicePlan, number>();
  const waves: ServicePlan[][] = [];
  ordered.forEach((plan, index) => {
    let wave = 0;
    for (const caller of ordered.slice(0, index)) {
      if (caller.oldDescriptor.uses.includes(plan.host.name)) wave = Math.max(wave, waveOf.get(caller)! + 1);
    }
    waveOf.set(plan, wave);
    (waves[wave] ??= []).push(plan);
  });
  return waves;
}

/** Callers before the services they call, so a draining handler's outgoing calls are answered. */
function suspendOrder(plans: ServicePlan[]): ServicePlan[] {
  const byName = new Map(plans.map((plan) => [plan.host.name, plan]));
  const ordered: ServicePlan[] = [];
  const visiting = new Set<string>();
  const done = new Set<string>();
  // Depth-first over "is used by": a service goes after everyone in the set that uses it.
  const visit = (plan: ServicePlan) => {
    const name = plan.host.name;
    if (done.has(name) || visiting.has(name)) return; // a cycle cannot be ordered; the drain timeout guards it
    visiting.add(name);
    for (const other of plans) {
      if (other !== plan && other.oldDescriptor.uses.includes(name)) visit(other);
    }
    visiting.delete(name);
    done.add(name);
    ordered.push(plan);
  };
  for (const plan of byName.values()) visit(plan);
  return ordered;
}

/** The error, said to be about that service (the report and the audit line name it). */
export function ofService(service: string, error: unknown): TheseusError {
  if (!(error instanceof TheseusError)) throw error;
  error.service = service;
  return error;
}
