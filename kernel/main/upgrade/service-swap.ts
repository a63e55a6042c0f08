// One swap of a release's services, stateful and pooled as one. Runs in the kernel's main thread.
//
// Stateful services go through the HotSwap machine (hot-swap.ts). Pooled services hand over no
// state: a new pool is warmed for each one that changed before that machine starts (phase
// prepare), switched only once it is past its switch, and discarded if it rolls back, so the
// release moves as one. When the swap went through, the switched services are checkpointed in
// their new release: the one place a swap writes state.

import semver from 'semver';
import { errorMessage, inPhase, theseusError } from '../../common/errors.ts';
import { sameDescriptor, sameSettings, type ServiceSource } from '../../common/protocol.ts';
import { roundMs } from '../../common/time.ts';
import type { PoolGeneration, PoolHost } from '../pool-host.ts';
import type { Bundle } from '../../release/bundler.ts';
import { HotSwap, type SwapEnvironment } from './hot-swap.ts';
import { refuseSameReleaseOtherCode } from './swap-plan.ts';
import { SwapError, unchangedEntry, type ServiceSwapReport, type SwapReport, type SwapTarget } from './report.ts';

/** What a swap of services needs from the kernel: the HotSwap's environment, the pools, checkpoints. */
export interface SwapKernel extends SwapEnvironment {
  /** Warms and starts a pool for a pooled service a release adds; not reachable until it joins. */
  startPool(service: string, release: string, bundle: Bundle, source: ServiceSource): Promise<PoolHost>;
  /** In the switch turn: an added pool joins the kernel's services; a removed one leaves them. */
  joinPool(pool: PoolHost): void;
  leavePool(pool: PoolHost, release: string): void;
  /** Writes a fresh checkpoint of these services (those that keep no state of their own). */
  checkpoint(services: string[]): Promise<void>;
  /** Told of the HotSwap machine when it starts, so the kernel can say which state it is in. */
  started(machine: { readonly state: string }): void;
}

export async function swapServices(kernel: SwapKernel, target: SwapTarget): Promise<SwapReport> {
  const started = performance.now();
  const failed = (error: unknown, services: ServiceSwapReport[] = []) => swapFailed(kernel, target, started, error, services);
  // Called by whichever switches first (the stateful swap, else the pools), and only once.
  let switchedOnce = false;
  // Pools the release adds (started in prepare) and removes: they join and leave in the switch turn.
  const addedPools: PoolHost[] = [];
  const removedPools = target.complete ? [...kernel.pools.values()].filter((pool) => !Object.hasOwn(target.services, pool.name)) : [];
  const onSwitch = () => {
    if (switchedOnce) return;
    switchedOnce = true;
    for (const pool of removedPools) kernel.leavePool(pool, target.release);
    for (const pool of addedPools) kernel.joinPool(pool);
    try {
      target.onSwitch?.();
    } catch (error) {
      kernel.log('error', `swap to ${target.release}: the switch hook failed: ${errorMessage(error)}`);
    }
  };
  if (!semver.valid(target.release)) {
    throw failed(inPhase(theseusError('E_BAD_OPTIONS', 'release version', `'${target.release}' is not a semantic version (like 1.2.3)`), 'check'));
  }
  const stateful: Record<string, ServiceSource> = {};
  const newPools: Array<{ name: string; source: ServiceSource }> = [];
  const pooled: Array<{ name: string; pool: PoolHost; source: ServiceSource & { pool: { size: number } } }> = [];
  for (const [name, source] of Object.entries(target.services)) {
    const pool = kernel.pools.get(name);
    if (pool && !source.pool) throw failed(inPhase(theseusError('E_POOLED_KIND_CHANGE', name, 'pooled', 'stateful'), 'check'));
    if (!pool && source.pool && kernel.hosts.has(name)) throw failed(inPhase(theseusError('E_POOLED_KIND_CHANGE', name, 'stateful', 'pooled'), 'check'));
    if (pool) pooled.push({ name, pool, source: source as ServiceSource & { pool: { size: number } } });
    else if (source.pool && target.complete) newPools.push({ name, source });
    else stateful[name] = source;
  }
  // A whole release that leaves out a stateful service removes it, even when it names no other.
  const statefulRemoved = target.complete === true && [...kernel.hosts.keys()].some((name) => !Object.hasOwn(stateful, name));

  // 1. Warm a new pool for each changed pooled service, while the old pools serve on.
  const warmStarted = performance.now();
  const warmed: Array<{ pool: PoolHost; generation: PoolGeneration }> = [];
  const unchanged: ServiceSwapReport[] = [];
  const warming = await Promise.allSettled([
    ...newPools.map(async ({ name, source }) => {
      const bundle = await kernel.bundle(source, name).catch((error: unknown) => Promise.reject(inPhase(error, 'check')));
      if (source.descriptor) refuseUses(kernel, target, name, source.descriptor.uses, 'check');
      const pool = await kernel.startPool(name, target.release, bundle, source).catch((error: unknown) => Promise.reject(inPhase(error, 'prepare')));
      addedPools.push(pool);
      refuseUses(kernel, target, name, pool.descriptor.uses, 'prepare');
      if (source.descriptor && !sameDescriptor(source.descriptor, pool.descriptor)) {
        throw inPhase(theseusError('E_DESCRIPTOR_MISMATCH', name, target.release, JSON.stringify(pool.descriptor), JSON.stringify(source.descriptor)), 'prepare');
      }
    }),
    ...pooled.map(async ({ name, pool, source }) => {
      if (pool.state !== 'running') throw inPhase(theseusError('E_SERVICE_NOT_RUNNING', name, pool.state), 'check');
      const bundle = await kernel.bundle(source, name).catch((error: unknown) => Promise.reject(inPhase(error, 'check')));
      if (bundle.sha256 === pool.bundle.sha256 && source.pool.size === pool.size && sameSettings(source, pool.current.source)) {
        unchanged.push(unchangedEntry(name, pool.release, pool.descriptor.vsn));
        return;
      }
      refuseSameReleaseOtherCode(name, pool.release, target.release);
      if (source.descriptor) refuseUses(kernel, target, name, source.descriptor.uses, 'check');
      const generation = await pool.warm(target.release, bundle, source).catch((error: unknown) => Promise.reject(inPhase(error, 'prepare')));
      warmed.push({ pool, generation });
      refuseUses(kernel, target, name, generation.descriptor.uses, 'prepare');
      if (source.descriptor && !sameDescriptor(source.descriptor, generation.descriptor)) {
        throw inPhase(theseusError('E_DESCRIPTOR_MISMATCH', name, target.release, JSON.stringify(generation.descriptor), JSON.stringify(source.descriptor)), 'prepare');
      }
    }),
  ]);
  const poolEntries = (outcome: ServiceSwapReport['outcome']): ServiceSwapReport[] => [
    ...addedPools.map((pool): ServiceSwapReport => ({ ...unchangedEntry(pool.name, '-', '-'), to: { release: target.release, vsn: pool.descriptor.vsn }, change: 'added', migration: 'a new pool', outcome })),
    ...removedPools.map((pool): ServiceSwapReport => ({ ...unchangedEntry(pool.name, pool.release, pool.descriptor.vsn), to: { release: target.release, vsn: '-' }, change: 'removed', migration: 'none', outcome: outcome === 'switched' ? 'switched' : 'not-started' })),
    ...warmed.map(({ pool, generation }): ServiceSwapReport => ({
      service: pool.name,
      from: { release: pool.release, vsn: pool.descriptor.vsn },
      to: { release: target.release, vsn: generation.descriptor.vsn },
      change: generation.bundle.sha256 === pool.bundle.sha256 ? 'config' : 'code',
      migration: 'none',
      stateBytes: 0,
      pauseMs: 0,
      drainMs: 0,
      carried: 0,
      outcome,
    })),
  ];
  // Nothing served from the new pools: ending them is the whole roll-back.
  const discardNewPools = () => Promise.all([...warmed.map(({ generation }) => generation.discard()), ...addedPools.map((pool) => pool.stop())]);
  const warmFailure = warming.find((result): result is PromiseRejectedResult => result.status === 'rejected');
  if (warmFailure) {
    // Nothing served from the new pools: ending them is the whole roll-back.
    const entries = poolEntries('rolled-back');
    for (const { name, pool, source } of pooled) {
      if (unchanged.some((entry) => entry.service === name) || entries.some((entry) => entry.service === name)) continue;
      // Its new pool never warmed, so what the new code declares is known only from a manifest.
      entries.push({ ...unchangedEntry(name, pool.release, pool.descriptor.vsn), to: { release: target.release, vsn: source.descriptor?.vsn ?? 'unknown' }, outcome: 'rolled-back' });
    }
    await discardNewPools();
    throw failed(warmFailure.reason, [...entries, ...unchanged]);
  }
  const warmMs = performance.now() - warmStarted;

  // 2. The stateful services, through the HotSwap machine, unless none of them changes.
  let statefulReport: SwapReport | null = null;
  let statefulUnchanged: ServiceSwapReport[] = [];
  const poolsChange = warmed.length > 0 || addedPools.length > 0 || removedPools.length > 0;
  if (Object.keys(stateful).length > 0 || statefulRemoved) {
    if (!poolsChange || statefulRemoved || (await anyStatefulChange(kernel, stateful))) {
      try {
        // The pools as they will be after the switch, with what each uses: the stateful swap wires to them and checks against them.
        const poolsAfter = new Map([...kernel.pools].filter(([name]) => !removedPools.some((pool) => pool.name === name)));
        for (const pool of addedPools) poolsAfter.set(pool.name, pool);
        const poolUses = new Map([...poolsAfter].map(([name, pool]) => [name, pool.descriptor.uses]));
        for (const { pool, generation } of warmed) poolUses.set(pool.name, generation.descriptor.uses);
        const env = { ...kernel, pools: poolsAfter, pooledServices: new Set(poolsAfter.keys()), poolUses, poolsLeaving: new Set(removedPools.map((pool) => pool.name)) };
        const machine = new HotSwap(env, { ...target, services: stateful, onSwitch });
        kernel.started(machine);
        statefulReport = await machine.run();
      } catch (error) {
        // Past its switch the release is decided, even if one service failed as it took over:
        // the pools follow. Before it, the new pools are discarded with the rest.
        const decided = error instanceof SwapError && error.report.outcome === 'failed-after-switch';
        const entries = poolEntries(decided ? 'switched' : 'rolled-back');
        if (decided) {
          await switchPools(kernel, warmed, target.release, onSwitch);
          await retirePools(kernel, removedPools);
        } else await discardNewPools();
        if (error instanceof SwapError) error.report.services.push(...entries, ...unchanged);
        throw error;
      }
    } else {
      // No stateful service changes, so what they use now is what they use after the swap.
      for (const pool of removedPools) {
        const users = [...kernel.hosts.values()].filter((host) => host.descriptor.uses.includes(pool.name)).map((host) => host.name);
        if (users.length > 0) {
          await discardNewPools();
          throw failed(inPhase(theseusError('E_REMOVED_STILL_USED', target.release, pool.name, users.join(', ')), 'check'), [...poolEntries('not-started'), ...unchanged]);
        }
      }
      statefulUnchanged = Object.keys(stateful).map((name) => {
        const host = kernel.hosts.get(name)!;
        return unchangedEntry(name, host.release, host.descriptor.vsn);
      });
    }
  }
  if (!statefulReport && !poolsChange) {
    throw failed(inPhase(theseusError('E_SWAP_NOTHING_TO_DO', target.release), 'check'), [...statefulUnchanged, ...unchanged]);
  }

  // 3. Every new call goes to the new pools; the old ones finish what they have and close.
  const switchedPools = poolEntries('switched');
  const switchStarted = performance.now();
  await switchPools(kernel, warmed, target.release, onSwitch);
  await retirePools(kernel, removedPools);
  if (!statefulReport) {
    // No HotSwap ran to tell the phases as they ended: the pools' own are told here.
    target.onPhase?.({ phase: 'prepare', ms: roundMs(warmMs), detail: `warmed the new pools of ${switchedPools.map((entry) => entry.service).join(', ')}` });
    target.onPhase?.({ phase: 'switch', ms: roundMs(performance.now() - switchStarted), detail: 'new calls go to the new pools; the old ones finished theirs' });
    kernel.log('info', `swap to ${target.release} switched`, { pools: switchedPools.map((entry) => entry.service) });
  }
  const phaseMs = { ...statefulReport?.phaseMs };
  if (warmed.length > 0) phaseMs.prepare = roundMs((phaseMs.prepare ?? 0) + warmMs);
  const report: SwapReport = {
    release: target.release,
    outcome: 'switched',
    services: [...(statefulReport?.services ?? statefulUnchanged), ...switchedPools, ...unchanged],
    phaseMs,
    totalMs: roundMs(performance.now() - started),
  };
  // The state as it stood at the switch, now in the new release (pools keep none).
  // A pre-copied service's state was kept as its old worker retired (hot-swap.ts): a checkpoint
  // of the new worker would encode its whole store in the thread that now serves.
  await kernel.checkpoint(
    report.services.filter((service) => service.outcome === 'switched' && !service.precopy && kernel.hosts.has(service.service)).map((service) => service.service),
  );
  return report;
}

/**
 * A pooled service's new code may use the stateful services the kernel will run after the swap
 * (those of the whole release, when the target names it), not another pool.
 */
function refuseUses(kernel: SwapKernel, target: SwapTarget, name: string, uses: readonly string[], phase: 'check' | 'prepare'): void {
  const pooled = uses.filter((dependency) => kernel.pools.has(dependency) || target.services[dependency]?.pool);
  if (pooled.length > 0) throw inPhase(theseusError('E_POOLED_USES', name, pooled.join(', ')), phase);
  const stateful = (dependency: string) => (target.complete ? Object.hasOwn(target.services, dependency) : kernel.hosts.has(dependency) || Object.hasOwn(target.services, dependency));
  const unknown = uses.find((dependency) => !stateful(dependency));
  if (unknown) throw inPhase(theseusError('E_UNKNOWN_DEPENDENCY', `${name}@${target.release}`, unknown), phase);
}

/** Whether any of these stateful services would get new code or settings (an unknown one counts: HotSwap refuses it). */
async function anyStatefulChange(kernel: SwapKernel, services: Record<string, ServiceSource>): Promise<boolean> {
  for (const [name, source] of Object.entries(services)) {
    const host = kernel.hosts.get(name);
    const bundle = host ? await kernel.bundle(source, name).catch(() => null) : null;
    if (!host || !bundle || bundle.sha256 !== host.bundle.sha256 || !sameSettings(source, host.source)) return true;
  }
  return false;
}

/** Pools a release removed, after its switch: they finish the calls they have, and their threads exit. */
async function retirePools(kernel: SwapKernel, removed: readonly PoolHost[]): Promise<void> {
  await Promise.all(removed.map((pool) => pool.stop()));
  for (const pool of removed) kernel.log('info', `${pool.name} removed; its pool finished its calls and closed`);
}

async function switchPools(kernel: SwapKernel, warmed: ReadonlyArray<{ pool: PoolHost; generation: PoolGeneration }>, release: string, onSwitch: () => void): Promise<void> {
  const retiring = warmed.map(({ pool, generation }) => {
    const fromRelease = pool.release;
    // switchTo routes new calls to the new pool before it returns its promise; the promise
    // waits for the old pool's threads to exit.
    const retired = pool.switchTo(generation);
    pool.lastSwap = { fromRelease, toRelease: release, at: Date.now(), pauseMs: 0, outcome: 'switched' };
    // Stateful services that call the pool learn its new calls and casts.
    for (const host of kernel.hosts.values()) {
      if (host.state !== 'running' || !host.descriptor.uses.includes(pool.name)) continue;
      const methods = { calls: [...generation.descriptor.calls], casts: [...generation.descriptor.casts] };
      void host.current.request('peer', { service: pool.name, methods }, kernel.controlTimeoutMs).catch(() => undefined);
    }
    return retired.catch((error: unknown) => kernel.log('warn', `${pool.name}@${fromRelease}: the old pool did not close cleanly: ${errorMessage(error)}`));
  });
  onSwitch();
  await Promise.all(retiring);
}

/** A swap that failed before anything switched, as a SwapError with its report. */
function swapFailed(kernel: SwapKernel, target: SwapTarget, started: number, error: unknown, services: ServiceSwapReport[]): SwapError {
  const cause = inPhase(error, 'check');
  const report: SwapReport = {
    release: target.release,
    outcome: cause.phase === 'check' ? 'refused' : 'rolled-back',
    failedPhase: cause.phase!,
    error: { code: cause.code, message: cause.message },
    services,
    phaseMs: {},
    totalMs: roundMs(performance.now() - started),
  };
  kernel.log('error', `swap to ${target.release} ${report.outcome} in phase ${cause.phase}: ${cause.message}`, { code: cause.code });
  return new SwapError(cause, report);
}
