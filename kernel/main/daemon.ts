// The kernel as a long-running program: boots a deploy root's permanent release, owns the pid
// file, the cookie and the control socket, and carries out the CLI's requests (status, upgrade,
// downgrade, commit, releases, remove, stop). Runs in the kernel's main thread.
//
// Lifecycle: starting -> running -> stopping -> stopped. Requests that change releases are
// serialized; each one always writes its audit line, whatever happened.

import { randomBytes } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import semver from 'semver';
import { TheseusError, errorMessage, theseusError } from '../common/errors.ts';
import type { ControlRequest, ProgressEvent } from '../common/control-protocol.ts';
import type { LogRecord } from '../common/protocol.ts';
import { discardInstall, installRelease, removeStaleStaging, verifyReleaseDir } from '../release/install.ts';
import type { HttpConfig, Manifest } from '../release/manifest.ts';
import { findEntry, readRegistry, registryFile, withCurrent, withPermanent, withoutRelease, writeRegistry } from '../release/registry.ts';
import { writeFileAtomic } from '../release/fs-atomic.ts';
import { hangIfFaulted } from '../common/faults.ts';
import { appendAudit } from './audit.ts';
import { ControlServer, type ControlChannel } from './control-server.ts';
import { assertCompatible, serviceSources, startFromRoot } from './deploy-root.ts';
import { runHooks } from './hooks.ts';
import { HttpFrontDoor } from './http-front-door.ts';
import type { Kernel } from './kernel.ts';
import { createKernelLog, type KernelLog } from './kernel-log.ts';
import { SwapError, type SwapReport } from './hot-swap.ts';
import { ensureVarDir, isAlive, varPaths, type VarPaths } from '../common/deploy-paths.ts';

type DaemonState = 'starting' | 'running' | 'stopping' | 'stopped';

export interface DaemonOptions {
  root: string;
  /** Pretty log lines on stdout as well as JSON in var/log/kernel.log. */
  terminal: boolean;
}

export class KernelDaemon {
  #state: DaemonState = 'starting';
  #root: string;
  #paths: VarPaths;
  #log: KernelLog;
  #kernel!: Kernel;
  #manifest!: Manifest;
  #manifestSha: Record<string, string> = {};
  #running!: string;
  #server: ControlServer | null = null;
  /** The release's HTTP listeners; their sockets stay put across upgrades. */
  #frontDoor: HttpFrontDoor | null = null;
  #startedAt = Date.now();
  #lastUpgrade: Record<string, unknown> | null = null;
  /** Release operations run one at a time. */
  #operation: Promise<unknown> = Promise.resolve();
  #stopped: Promise<void>;
  /** Consoles and `kernel logs`-like streams that receive every log line as it happens. */
  #logSubscribers = new Set<ControlChannel>();
  #resolveStopped!: () => void;

  private constructor(options: DaemonOptions) {
    this.#root = options.root;
    this.#paths = varPaths(options.root);
    this.#log = createKernelLog(this.#paths.log, { terminal: options.terminal });
    this.#stopped = new Promise((resolve) => (this.#resolveStopped = resolve));
  }

  get pid(): number {
    return process.pid;
  }

  get release(): string {
    return this.#running;
  }

  /** The release that was on trial when the kernel last stopped, reverted at this boot. */
  revertedTrial: string | null = null;

  /** One line for humans: app, release, pid, services. */
  get summary(): string {
    const services = Object.entries(this.#manifest.services).map(([name, service]) => `${name} (vsn ${service.vsn})`);
    return `${this.#manifest.app} ${this.#running}, pid ${process.pid}, services: ${services.join(', ')}`;
  }

  /** Resolves once the daemon has stopped (a stop request, or stop()). */
  get stopped(): Promise<void> {
    return this.#stopped;
  }

  static async start(options: DaemonOptions): Promise<KernelDaemon> {
    const paths = varPaths(options.root);
    await ensureVarDir(paths);
    await refuseIfRunning(options.root, paths);
    const daemon = new KernelDaemon(options);
    try {
      await daemon.#boot();
    } catch (error) {
      daemon.#kernelLog('error', `start failed: ${errorMessage(error)}`);
      // Whatever did start is stopped: no listener or worker outlives a failed start.
      await daemon.#frontDoor?.close().catch(() => undefined);
      await daemon.#kernel?.stop().catch(() => undefined);
      await daemon.#cleanUp();
      throw error;
    }
    return daemon;
  }

  async #boot(): Promise<void> {
    await writeFileAtomic(this.#paths.pid, `${process.pid}\n`, 0o600);
    await removeStaleStaging(this.#root, (message) => this.#kernelLog('warn', message));
    const registry = await readRegistry(this.#root);
    const permanent = registry.releases.find((entry) => entry.status === 'permanent');
    if (permanent) {
      const manifest = JSON.parse(await readFile(join(this.#root, 'releases', permanent.version, 'manifest.json'), 'utf8').catch(() => '{}')) as Partial<Manifest>;
      await runHooks('preStart', manifest.hooks?.preStart ?? [], this.#root, { THESEUS_RELEASE: permanent.version });
    }
    const booted = await startFromRoot(this.#root, (record) => this.#writeLog(record));
    this.#kernel = booted.kernel;
    this.#manifest = booted.manifest;
    this.#running = booted.version;
    for (const entry of (await readRegistry(this.#root)).releases) this.#manifestSha[entry.version] = entry.manifestSha256;
    this.revertedTrial = booted.revertedTrial;
    this.#frontDoor = new HttpFrontDoor({
      callBatch: (service, calls, encoding) => this.#kernel.callBatch(service, calls, encoding),
      concurrent: (service) => this.#kernel.isPooled(service),
      log: (level, message) => this.#kernelLog(level, message),
    });
    await this.#frontDoor.apply(this.#manifest.http ?? null);
    if (booted.revertedTrial) this.#kernelLog('warn', `release ${booted.revertedTrial} was on trial and was reverted; booted ${booted.version}`);
    const cookie = await ensureCookie(this.#paths.cookie);
    this.#server = await ControlServer.listen(this.#paths.socket, cookie, (request, emit) => this.#handle(request, emit));
    this.#state = 'running';
    this.#kernelLog('info', `kernel ready: ${booted.manifest.app} ${booted.version}, pid ${process.pid}`);
    await appendAudit(this.#paths.audit, { op: 'start', from: null, to: booted.version, hashes: this.#hashes(booted.version), outcome: 'ok' });
    await runHooks('postStart', this.#manifest.hooks.postStart, this.#root, { THESEUS_RELEASE: this.#running }).catch((error: unknown) =>
      this.#kernelLog('warn', errorMessage(error)),
    );
  }

  async stop(): Promise<void> {
    if (this.#state === 'stopping' || this.#state === 'stopped') return this.#stopped;
    this.#state = 'stopping';
    try {
      await this.#operation.catch(() => undefined);
      await runHooks('preStop', this.#manifest.hooks.preStop, this.#root, { THESEUS_RELEASE: this.#running }).catch((error: unknown) =>
        this.#kernelLog('warn', errorMessage(error)),
      );
      await this.#server?.close();
      // Requests in flight are answered while the services still run; then the services stop.
      await this.#frontDoor?.close();
      await this.#kernel.stop();
      await appendAudit(this.#paths.audit, { op: 'stop', from: this.#running, to: null, hashes: this.#hashes(this.#running), outcome: 'ok' });
      await runHooks('postStop', this.#manifest.hooks.postStop, this.#root, { THESEUS_RELEASE: this.#running }).catch((error: unknown) =>
        this.#kernelLog('warn', errorMessage(error)),
      );
      this.#kernelLog('info', 'kernel stopped');
    } finally {
      await this.#cleanUp();
      this.#state = 'stopped';
      this.#resolveStopped();
    }
  }

  async #cleanUp(): Promise<void> {
    await this.#server?.close().catch(() => undefined);
    await rm(this.#paths.pid, { force: true });
    this.#log.flush();
  }

  // -------------------------------------------------------------------------------------------

  async #handle(request: ControlRequest, channel: ControlChannel): Promise<unknown> {
    const emit = channel.emit;
    switch (request.op) {
      case 'describe':
        return (await this.#kernel.status()).map((service) => ({
          name: service.name,
          release: service.release,
          vsn: service.vsn,
          calls: [...this.#kernel.methods(service.name).calls],
          casts: [...this.#kernel.methods(service.name).casts],
        }));
      case 'logs': {
        this.#logSubscribers.add(channel);
        await channel.closed;
        this.#logSubscribers.delete(channel);
        return null;
      }
      case 'call': {
        const { service, method, args } = request.args;
        const client = this.#kernel.client<Record<string, (...a: unknown[]) => unknown>>(service);
        const methods = this.#kernel.methods(service);
        if (methods.casts.includes(method)) {
          client[method]!(...args);
          return { cast: true };
        }
        return { reply: await client[method]!(...args) };
      }
      case 'ping':
        return { pong: true, pid: process.pid, release: this.#running };
      case 'status':
        return this.#status();
      case 'releases': {
        const registry = await readRegistry(this.#root);
        return registry.releases.map((entry) => ({ ...entry, running: entry.version === this.#running }));
      }
      case 'upgrade':
        return this.#serialized(() => this.#swapTo(request.args.source, request.args.commit, emit));
      case 'downgrade':
        return this.#serialized(() => this.#swapTo(request.args.version, request.args.commit, emit));
      case 'commit':
        return this.#serialized(() => this.#commit());
      case 'remove':
        return this.#serialized(() => this.#remove(request.args.version));
      case 'stop':
        // Answer first, then stop: the CLI waits for the pid to go away.
        setImmediate(() => void this.stop());
        return { stopping: true, pid: process.pid };
    }
  }

  #serialized<T>(operation: () => Promise<T>): Promise<T> {
    if (this.#state !== 'running') return Promise.reject(theseusError('E_KERNEL_STOPPED'));
    const next = this.#operation.catch(() => undefined).then(operation);
    this.#operation = next;
    return next;
  }

  async #status(): Promise<unknown> {
    const registry = await readRegistry(this.#root);
    return {
      pid: process.pid,
      root: this.#root,
      app: this.#manifest.app,
      release: this.#running,
      permanent: registry.releases.find((entry) => entry.status === 'permanent')?.version ?? null,
      uptimeMs: Date.now() - this.#startedAt,
      services: await this.#kernel.status(),
      lastUpgrade: this.#lastUpgrade,
      http: this.#frontDoor && this.#frontDoor.state !== 'idle' ? this.#frontDoor.stats() : null,
    };
  }

  async #swapTo(source: string, commit: boolean, emit: (event: ProgressEvent) => void): Promise<unknown> {
    const from = this.#running;
    const durations: Record<string, number> = {};
    const step = (name: ProgressEvent['step'], ms: number, detail?: string) => {
      durations[name] = ms;
      emit(detail === undefined ? { step: name, ms } : { step: name, ms, detail });
    };
    let to: string | null = null;
    /** The release this request installed, if it did: a refusal takes it away again. */
    let fresh: string | null = null;
    let op: 'upgrade' | 'downgrade' = 'upgrade';
    /** Set when probation or the registry write sent the kernel back: whether that worked. */
    let reverted: boolean | null = null;
    try {
      const installed = await installRelease(this.#root, source, { onStep: (name, ms) => step(name, ms) });
      to = installed.version;
      this.#manifestSha[to] = installed.manifestSha256;
      if (!installed.alreadyInstalled) {
        fresh = to;
        await appendAudit(this.#paths.audit, { op: 'install', from: null, to, hashes: this.#hashes(to), outcome: 'ok', durations: { ...durations } });
      }
      op = semver.gte(to, from) ? 'upgrade' : 'downgrade';
      assertCompatible(installed.manifest);
      const running = Object.keys(this.#manifest.services).sort().join(',');
      const next = Object.keys(installed.manifest.services).sort().join(',');
      if (running !== next) {
        throw theseusError('E_UNSUPPORTED_CHANGE', to, `it has services [${next}] where ${from} has [${running}]; adding or removing services during a hot swap is not built yet`);
      }
      await runHooks('preUpgrade', installed.manifest.hooks.preUpgrade, this.#root, { THESEUS_RELEASE: to, THESEUS_FROM: from });
      // New HTTP listeners open before anything is swapped: a taken port refuses the release. The
      // new routes take over in the turn the new code starts serving.
      const http = await this.#frontDoor!.stage(installed.manifest.http ?? null);
      const watched = installed.manifest.probationMs > 0;
      let report: SwapReport;
      /** A new worker that died as it took over, on probation: reverted like any probation crash. */
      let lostAtSwitch: { service: string; reason: string } | null = null;
      try {
        report = await this.#kernel.upgrade({
          release: to,
          services: serviceSources(installed.dir, installed.manifest),
          onSwitch: () => http.commit(),
          // From the switch on, a crash of the new code is left for the revert, not restarted.
          probation: watched,
        });
      } catch (error) {
        const decided = error instanceof SwapError && error.report.outcome === 'failed-after-switch';
        // Past the switch the new code serves, even if one service failed as it took over.
        if (decided) http.commit();
        else await http.abort();
        if (error instanceof SwapError) this.#emitPhases(error.report, step);
        if (decided) {
          this.#running = to;
          this.#manifest = installed.manifest;
        }
        if (!decided || !watched) throw error;
        report = (error as SwapError).report;
        lostAtSwitch = { service: (error as SwapError).service ?? 'a service', reason: `its new worker failed as it took over (${(error as SwapError).message})` };
      }
      if (!lostAtSwitch) {
        http.commit();
        this.#emitPhases(report, step);
      }
      // The kernel runs `to` from here, whatever probation decides next.
      this.#running = to;
      this.#manifest = installed.manifest;
      const probationStarted = performance.now();
      const verdict = lostAtSwitch ?? (await this.#probation(installed.manifest.probationMs));
      if (verdict) {
        const revert = await this.#revert(from, verdict.service, verdict.reason);
        reverted = revert.ok;
        step('probation', round(performance.now() - probationStarted), `${verdict.service} unhealthy: ${verdict.reason}; ${revert.message}`);
        const failure = theseusError('E_PROBATION_FAILED', verdict.service, to, verdict.reason, revert.message);
        failure.phase = 'probation';
        throw failure;
      }
      step('probation', round(performance.now() - probationStarted), installed.manifest.probationMs > 0 ? 'healthy' : 'off (probationMs is 0)');
      await hangIfFaulted('probation', (message) => this.#kernelLog('warn', message));
      const mark = performance.now();
      try {
        let registry = withCurrent(await readRegistry(this.#root), to);
        if (commit) registry = withPermanent(registry, to);
        await writeRegistry(this.#root, registry);
      } catch (error) {
        // The registry must tell the truth about what runs: if it cannot record the new release,
        // the old one comes back, with its state carried down.
        const revert = await this.#revert(from, 'registry', errorMessage(error), 'commit');
        reverted = revert.ok;
        const failure = theseusError('E_REGISTRY_WRITE_FAILED', registryFile(this.#root), `${errorMessage(error)}. ${revert.message}`);
        failure.phase = 'commit';
        throw failure;
      }
      await hangIfFaulted('commit', (message) => this.#kernelLog('warn', message));
      step('commit', round(performance.now() - mark), commit ? `${to} is permanent` : `${to} is on trial: 'kernel commit' makes it permanent, a restart reverts it`);
      await runHooks('postUpgrade', installed.manifest.hooks.postUpgrade, this.#root, { THESEUS_RELEASE: to, THESEUS_FROM: from }).catch((error: unknown) =>
        this.#kernelLog('warn', errorMessage(error)),
      );
      this.#lastUpgrade = { from, to, at: new Date().toISOString(), committed: commit, services: report.services };
      await appendAudit(this.#paths.audit, { op, from, to, hashes: this.#hashes(from, to), outcome: 'ok', durations });
      return { from, to, committed: commit, report };
    } catch (error) {
      const coded = error instanceof TheseusError ? error : new TheseusError('E_INTERNAL', errorMessage(error));
      // Installing and verifying the release is part of the check: nothing running was touched.
      coded.phase ??= 'check';
      // What really happened: a revert that failed is recorded as such, never as a roll-back, and
      // a swap that failed after its switch (unwatched) as a failure: nothing went back.
      const outcome =
        reverted === true
          ? 'rolled-back'
          : reverted === false
            ? 'revert-failed'
            : error instanceof SwapError
              ? error.report.outcome === 'refused'
                ? 'refused'
                : error.report.outcome === 'rolled-back'
                  ? 'rolled-back'
                  : 'failed'
              : 'failed';
      // A release installed by this very request goes again when its code never served (refused,
      // or rolled back before the switch); once it served, a checkpoint may name it, so it stays.
      const served = reverted !== null || (error instanceof SwapError && error.report.outcome === 'failed-after-switch');
      if (fresh !== null) coded.message = `${coded.message} ${await discardInstall(this.#root, fresh, served)}`;
      // The audit line must not hide the error it records.
      await appendAudit(this.#paths.audit, {
        op,
        from,
        to,
        hashes: this.#hashes(from, ...(to ? [to] : [])),
        outcome,
        ...(coded.phase ? { phase: coded.phase } : {}),
        reason: coded.message,
        code: coded.code,
        durations,
      }).catch((auditError: unknown) => this.#kernelLog('error', `the audit trail could not be written: ${errorMessage(auditError)}`));
      throw coded;
    } finally {
      // Probation never outlives its upgrade, whatever ended it (a no-op once it has ended).
      this.#kernel.abandonProbation();
    }
  }

  /**
   * Watches every service for `windowMs`; returns the first unhealthy one, or null. A new worker
   * that crashes is not restarted meanwhile (the kernel holds it, crashed, for the revert), so the
   * verdict never races supervision; and probation ends in the same synchronous step as its last
   * check, so a crash cannot fall between the two.
   */
  async #probation(windowMs: number): Promise<{ service: string; reason: string } | null> {
    if (windowMs <= 0) return null;
    const until = performance.now() + windowMs;
    const interval = Math.max(10, Math.min(100, windowMs / 5));
    const crashVerdict = (crash: { service: string; reason: string }) => ({ service: crash.service, reason: `its worker crashed during probation (${crash.reason})` });
    let wake = () => {};
    const stopListening = this.#kernel.onProbationCrash(() => wake());
    try {
      for (;;) {
        const crash = this.#kernel.probationCrashes()[0];
        if (crash) return crashVerdict(crash);
        for (const service of this.#kernel.services) {
          const { healthy, reason } = await this.#kernel.health(service);
          if (!healthy) return { service, reason: reason ?? 'unhealthy' };
        }
        if (performance.now() >= until) {
          const late = this.#kernel.endProbation()[0];
          return late ? crashVerdict(late) : null;
        }
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, interval);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
    } finally {
      stopListening();
    }
  }

  /**
   * Swaps back to `version` (still installed and unchanged in the registry), carrying the state
   * down. A service that crashed on probation has no worker left to suspend: it starts again in
   * the old code from its last state (in reply durability, every change a caller was told of).
   * The others go back through an ordinary hot swap. Always ends probation.
   */
  async #revert(version: string, service: string, reason: string, phase: 'probation' | 'commit' = 'probation'): Promise<{ ok: boolean; message: string }> {
    const dir = join(this.#root, 'releases', version);
    let http: { commit(): void; abort(): Promise<void> } | null = null;
    try {
      const { manifest } = await verifyReleaseDir(dir);
      const sources = serviceSources(dir, manifest);
      // The old release's listeners, if it had others; a port taken meanwhile is reported, and
      // the routes that can come back still do.
      let httpProblem: string | null = null;
      http = await this.#frontDoor!.stage(manifest.http ?? null).catch((error: unknown) => {
        httpProblem = errorMessage(error);
        return this.#frontDoor!.stage(keepListeners(manifest.http ?? null, this.#frontDoor!.stats().listeners));
      });
      const staged = http;
      // A service may crash while the revert swaps it back: it is then reverted from its crash on
      // the next round. The rounds are few; past them the revert has failed.
      for (let round = 1; ; round++) {
        for (const crash of this.#kernel.probationCrashes()) {
          const source = sources[crash.service];
          if (!source) throw theseusError('E_UNSUPPORTED_CHANGE', version, `it has no service '${crash.service}' to revert to`);
          await this.#kernel.revertCrashed(crash.service, { release: version, source });
        }
        try {
          await this.#kernel.downgrade({ release: version, services: sources, onSwitch: () => staged.commit() });
          break;
        } catch (error) {
          // Every service that changed had crashed and is already back: nothing is left to swap.
          if (error instanceof TheseusError && error.code === 'E_SWAP_NOTHING_TO_DO') break;
          if (round < 3 && this.#kernel.probationCrashes().length > 0) continue;
          throw error;
        }
      }
      staged.commit();
      this.#running = version;
      this.#manifest = manifest;
      const note = httpProblem ? ` Its HTTP listeners could not all be reopened (${httpProblem}); the running ones serve its routes.` : '';
      await appendAudit(this.#paths.audit, { op: 'rollback', from: null, to: version, hashes: this.#hashes(version), outcome: 'ok', phase, reason: `${service}: ${reason}${note}` });
      return { ok: true, message: `Reverted to ${version}, with the state carried back.${note}` };
    } catch (error) {
      await http?.abort();
      // The new release keeps running: record it as on trial, so the registry tells the truth
      // and a restart boots the permanent one.
      await writeRegistry(this.#root, withCurrent(await readRegistry(this.#root), this.#running)).catch(() => undefined);
      await appendAudit(this.#paths.audit, { op: 'rollback', from: null, to: version, hashes: this.#hashes(version), outcome: 'failed', phase, reason: errorMessage(error) }).catch(
        () => undefined,
      );
      return { ok: false, message: `Could not revert to ${version} (${errorMessage(error)}); ${this.#running} stays running on trial and a restart boots the permanent release.` };
    } finally {
      // Whatever is still crashed goes to supervision: probation never outlives its verdict.
      this.#kernel.abandonProbation();
    }
  }

  #emitPhases(report: SwapReport, step: (name: ProgressEvent['step'], ms: number, detail?: string) => void): void {
    const phases = report.phaseMs;
    if (phases.check !== undefined) step('plan', round(phases.check));
    if (phases.prepare !== undefined) step('boot', round(phases.prepare));
    if (phases.suspend !== undefined) step('drain', round(phases.suspend));
    if (phases.migrate !== undefined) step('migrate', round(phases.migrate));
    if (phases.switch !== undefined) {
      const pauses = report.services.filter((s) => s.outcome === 'switched').map((s) => `${s.service} paused ${s.pauseMs} ms`);
      step('switch', round(phases.switch), pauses.join(', '));
    }
  }

  async #commit(): Promise<unknown> {
    const registry = await readRegistry(this.#root);
    const entry = findEntry(registry, this.#running);
    if (entry?.status === 'permanent') throw theseusError('E_NOTHING_TO_COMMIT', this.#running);
    const previous = registry.releases.find((e) => e.status === 'permanent')?.version ?? null;
    await writeRegistry(this.#root, withPermanent(registry, this.#running));
    if (this.#lastUpgrade && this.#lastUpgrade.to === this.#running) this.#lastUpgrade.committed = true;
    await appendAudit(this.#paths.audit, { op: 'commit', from: previous, to: this.#running, hashes: this.#hashes(this.#running), outcome: 'ok' });
    return { permanent: this.#running };
  }

  async #remove(version: string): Promise<unknown> {
    if (version === this.#running) throw theseusError('E_REMOVE_REFUSED', version, 'running');
    const registry = withoutRelease(await readRegistry(this.#root), version);
    await writeRegistry(this.#root, registry);
    await rm(join(this.#root, 'releases', version), { recursive: true, force: true });
    await appendAudit(this.#paths.audit, { op: 'remove', from: version, to: null, hashes: this.#hashes(version), outcome: 'ok' });
    return { removed: version };
  }

  #hashes(...versions: string[]): Record<string, string> {
    return Object.fromEntries(versions.filter((v) => this.#manifestSha[v]).map((v) => [v, this.#manifestSha[v]!]));
  }

  #kernelLog(level: LogRecord['level'], message: string): void {
    this.#writeLog({ level, service: 'kernel', release: this.#running ?? '-', message, time: Date.now() });
  }

  #writeLog(record: LogRecord): void {
    this.#log.write(record);
    for (const subscriber of this.#logSubscribers) subscriber.log(record);
  }
}

/** `config` limited to the listeners already open: the routes a revert can restore without a new port. */
function keepListeners(config: HttpConfig | null, open: ReadonlyArray<{ host: string; configuredPort: number }>): HttpConfig | null {
  if (!config) return null;
  const listeners = config.listeners.filter((listener) => open.some((o) => o.host === listener.host && o.configuredPort === listener.port));
  return listeners.length > 0 ? { ...config, listeners } : null;
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}

async function ensureCookie(file: string): Promise<string> {
  const existing = await readFile(file, 'utf8').catch(() => null);
  if (existing && existing.trim().length >= 32) return existing.trim();
  const cookie = randomBytes(32).toString('hex');
  await writeFileAtomic(file, `${cookie}\n`, 0o600);
  return cookie;
}

/** Refuses a second kernel on the same root; removes a pid file and socket left by a dead one. */
async function refuseIfRunning(root: string, paths: VarPaths): Promise<void> {
  const text = await readFile(paths.pid, 'utf8').catch(() => null);
  const pid = text === null ? NaN : Number.parseInt(text, 10);
  if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && isAlive(pid)) throw theseusError('E_ALREADY_RUNNING', root, pid);
  // Whatever is left is stale: the process that wrote it is gone.
  await rm(paths.pid, { force: true });
  await rm(paths.socket, { force: true });
}
