// The kernel as a long-running program: boots a deploy root's permanent release, owns the pid
// file, the cookie and the control socket, and carries out the CLI's requests (status, upgrade,
// downgrade, commit, releases, remove, stop). Runs in the kernel's main thread.
//
// Lifecycle: starting -> running -> stopping -> stopped. Requests that change releases are
// serialized; each one always writes its audit line, whatever happened.

import { randomBytes } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { errorMessage, theseusError } from '../common/errors.ts';
import type { StatusResult } from '../common/control-protocol.ts';
import { ensureVarDir, isAlive, varPaths, type VarPaths } from '../common/deploy-paths.ts';
import type { PhaseEvent } from '../common/phases.ts';
import type { LogRecord } from '../common/protocol.ts';
import { writeFileAtomic } from '../release/fs-atomic.ts';
import { removeStaleStaging } from '../release/install.ts';
import type { Manifest } from '../release/manifest.ts';
import { findEntry, readRegistry, withInstallTimes, withPermanent, withoutRelease, writeRegistry } from '../release/registry.ts';
import { checkTransition, type TransitionTable } from '../common/lifecycle.ts';
import { appendAudit } from './audit.ts';
import { ControlServer, dispatchTo, type ControlChannel, type ControlHandlers } from './control-server.ts';
import { startFromRoot } from './deploy-root.ts';
import { runHooks } from './hooks.ts';
import { HttpFrontDoor } from './http-front-door.ts';
import { KernelHealth, readStopGraceMs } from './health.ts';
import type { Kernel } from './kernel.ts';
import { createKernelLog, type KernelLog } from './kernel-log.ts';
import { ReleaseUpgrade, type UpgradeResult } from './upgrade/release-upgrade.ts';
import { startAdmin, type Admin } from './admin/admin.ts';

type DaemonState = 'starting' | 'running' | 'stopping' | 'stopped';

/** A stop may come while it starts (a signal, or a boot that failed). */
const allowedTransitions: TransitionTable<DaemonState> = {
  starting: ['running', 'stopping'],
  running: ['stopping'],
  stopping: ['stopped'],
  stopped: [],
};

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
  #lastUpgrade: StatusResult['lastUpgrade'] = null;
  /** Release operations run one at a time. */
  #operation: Promise<unknown> = Promise.resolve();
  #stopped: Promise<void>;
  /** Consoles and `kernel logs`-like streams that receive every log line as it happens. */
  #logSubscribers = new Set<ControlChannel>();
  #resolveStopped!: () => void;
  /** What GET /_theseus/health and status answer: starting, ok, or draining once a stop began. */
  #health: KernelHealth;
  /** /metrics and the dashboard (null when the release turns them off). */
  #admin: Admin | null = null;

  private constructor(options: DaemonOptions) {
    this.#root = options.root;
    this.#paths = varPaths(options.root);
    this.#log = createKernelLog(this.#paths.log, { terminal: options.terminal });
    this.#health = new KernelHealth({ release: () => this.#running ?? null, stopGraceMs: readStopGraceMs() });
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
      await daemon.#admin?.close().catch(() => undefined);
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
      health: (method) => this.#health.answer(method),
      onAnswered: (ms) => this.#admin?.metrics.httpLatency.call(true, ms),
    });
    this.#kernel.onRestart((service) => this.#frontDoor?.serviceRestarted(service));
    this.#kernel.onGiveUp((service) => this.#frontDoor?.serviceFailed(service));
    await this.#frontDoor.apply(this.#manifest.http ?? null);
    if (booted.revertedTrial) this.#kernelLog('warn', `release ${booted.revertedTrial} was on trial and was reverted; booted ${booted.version}`);
    const cookie = await ensureCookie(this.#paths.cookie);
    this.#server = await ControlServer.listen(this.#paths.socket, cookie, dispatchTo(this.#handlers()));
    this.#admin = await startAdmin({
      config: this.#manifest.admin,
      paths: this.#paths,
      token: await ensureCookie(this.#paths.adminToken),
      kernel: this.#kernel,
      frontDoor: this.#frontDoor,
      kernelInfo: () => ({ app: this.#manifest.app, release: this.#running, startedAt: this.#startedAt }),
      releases: async () => (await readRegistry(this.#root)).releases.map((entry) => ({ version: entry.version, status: entry.status, running: entry.version === this.#running })),
      log: (level, message) => this.#kernelLog(level, message),
    });
    this.#transition('running');
    this.#health.serving();
    this.#kernelLog('info', `kernel ready: ${booted.manifest.app} ${booted.version}, pid ${process.pid}`);
    await appendAudit(this.#paths.audit, { op: 'start', from: null, to: booted.version, hashes: this.#hashes(booted.version), outcome: 'ok' });
    await runHooks('postStart', this.#manifest.hooks.postStart, this.#root, { THESEUS_RELEASE: this.#running }).catch((error: unknown) =>
      this.#kernelLog('warn', errorMessage(error)),
    );
  }

  async stop(): Promise<void> {
    if (this.#state === 'stopping' || this.#state === 'stopped') return this.#stopped;
    this.#transition('stopping');
    this.#health.draining();
    try {
      await this.#operation.catch(() => undefined);
      await runHooks('preStop', this.#manifest.hooks.preStop, this.#root, { THESEUS_RELEASE: this.#running }).catch((error: unknown) =>
        this.#kernelLog('warn', errorMessage(error)),
      );
      // Health has said "draining" since the stop began; the listeners keep serving for the rest
      // of the grace, so a balancer polling takes the host out before a connection is refused.
      if (this.#health.stopGraceMs > 0 && this.#frontDoor?.state === 'listening') this.#kernelLog('info', `draining: health answers 503 for ${this.#health.stopGraceMs} ms before the HTTP listeners close`);
      await this.#health.graceBeforeClosing(this.#frontDoor?.state === 'listening');
      await this.#server?.close();
      await this.#admin?.close();
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
      this.#transition('stopped');
      this.#resolveStopped();
    }
  }

  #transition(next: DaemonState): void {
    this.#state = checkTransition(allowedTransitions, 'the kernel daemon', this.#state, next);
  }

  async #cleanUp(): Promise<void> {
    await this.#server?.close().catch(() => undefined);
    await rm(this.#paths.pid, { force: true });
    this.#log.flush();
  }

  // -------------------------------------------------------------------------------------------

  /** One handler per control op, each answering exactly what its op answers (ControlReplies). */
  #handlers(): ControlHandlers {
    return {
      describe: async () =>
        (await this.#kernel.status()).map((service) => ({
          name: service.name,
          release: service.release,
          vsn: service.vsn,
          calls: [...this.#kernel.methods(service.name).calls],
          casts: [...this.#kernel.methods(service.name).casts],
          args: { ...this.#kernel.methods(service.name).args },
        })),
      logs: async (_args, channel) => {
        this.#logSubscribers.add(channel);
        await channel.closed;
        this.#logSubscribers.delete(channel);
        return null;
      },
      call: async ({ service, method, args }) => {
        const client = this.#kernel.client<Record<string, (...a: unknown[]) => unknown>>(service);
        if (this.#kernel.methods(service).casts.includes(method)) {
          // A cast answers nothing: arguments it would refuse are refused here, to this caller.
          await this.#kernel.checkArgs(service, method, args);
          client[method]!(...args);
          return { cast: true };
        }
        return { reply: await client[method]!(...args) };
      },
      ping: async () => ({ pong: true, pid: process.pid, release: this.#running }),
      status: () => this.#status(),
      releases: async () => {
        const kept = await this.#kernel.keptStates();
        return (await withInstallTimes(this.#root, await readRegistry(this.#root))).releases.map((entry) => {
          const keptState = kept.filter((state) => state.release === entry.version).map((state) => state.service);
          return { ...entry, running: entry.version === this.#running, ...(keptState.length > 0 ? { keptState } : {}) };
        });
      },
      // Each verb goes one way only: an upgrade to an older release is refused, and so on.
      upgrade: ({ source, commit }, channel) => this.#serialized(() => this.#upgrade('upgrade', source, commit, channel.emit)),
      downgrade: ({ version, commit }, channel) => this.#serialized(() => this.#upgrade('downgrade', version, commit, channel.emit)),
      commit: () => this.#serialized(() => this.#commit()),
      remove: ({ version }) => this.#serialized(() => this.#remove(version)),
      stop: async () => {
        // Answer first, then stop: the CLI waits for the pid to go away.
        setImmediate(() => void this.stop());
        return { stopping: true, pid: process.pid, graceMs: this.#frontDoor?.state === 'listening' ? this.#health.stopGraceMs : 0 };
      },
    };
  }

  #serialized<T>(operation: () => Promise<T>): Promise<T> {
    if (this.#state !== 'running') return Promise.reject(theseusError('E_KERNEL_STOPPED'));
    const next = this.#operation.catch(() => undefined).then(operation);
    this.#operation = next;
    return next;
  }

  async #status(): Promise<StatusResult> {
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
      health: this.#health.report(),
      kept: await this.#kernel.keptStates(),
    };
  }

  /** `kernel upgrade` and `kernel downgrade`: the release-level machine, in upgrade/release-upgrade.ts. */
  async #upgrade(direction: 'upgrade' | 'downgrade', source: string, commit: boolean, emit: (event: PhaseEvent) => void): Promise<UpgradeResult> {
    const watched = this.#admin?.watchSwap(direction, this.#running);
    const upgrade = new ReleaseUpgrade(
      {
        root: this.#root,
        kernel: this.#kernel,
        frontDoor: this.#frontDoor!,
        running: () => ({ version: this.#running, manifest: this.#manifest }),
        setRunning: (version, manifest) => {
          this.#running = version;
          this.#manifest = manifest;
        },
        rememberHash: (version, sha256) => (this.#manifestSha[version] = sha256),
        hashes: (...versions) => this.#hashes(...versions),
        audit: (entry) => {
          watched?.audited(entry);
          return appendAudit(this.#paths.audit, entry);
        },
        log: (level, message) => this.#kernelLog(level, message),
      },
      { source, commit, direction },
      emit,
    );
    const result = await upgrade.run().catch((error: unknown) => {
      watched?.ended(error);
      throw error;
    });
    watched?.ended(result);
    this.#lastUpgrade = { from: result.from, to: result.to, at: new Date().toISOString(), committed: result.committed, services: result.report.services };
    return result;
  }

  async #commit(): Promise<{ permanent: string }> {
    const registry = await readRegistry(this.#root);
    const entry = findEntry(registry, this.#running);
    if (entry?.status === 'permanent') throw theseusError('E_NOTHING_TO_COMMIT', this.#running);
    const previous = registry.releases.find((e) => e.status === 'permanent')?.version ?? null;
    await writeRegistry(this.#root, withPermanent(registry, this.#running));
    if (this.#lastUpgrade && this.#lastUpgrade.to === this.#running) this.#lastUpgrade.committed = true;
    await appendAudit(this.#paths.audit, { op: 'commit', from: previous, to: this.#running, hashes: this.#hashes(this.#running), outcome: 'ok' });
    return { permanent: this.#running };
  }

  async #remove(version: string): Promise<{ removed: string }> {
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
