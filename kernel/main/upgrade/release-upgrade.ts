// The upgrade of a running kernel to a release, as `kernel upgrade` and `kernel downgrade` ask for
// it: the heart of Theseus, told here from start to end. Runs in the kernel's main thread.
//
//   idle -> installing -> checking -> swapping -> watching -> committing -> committed
//              |             |          |  |         |            |
//              v             v          |  |         +------------+--> reverting -> reverted
//            failed        failed |     |  |                                    \-> revert-failed
//                                 +--> refused (the running release again, or the wrong way)
//                                       |  +--> failed (a new worker died at the switch, unwatched)
//                                       +--> refused (check) | rolled-back (prepare to migrate)
//
// installing   (phase check) unpack the release into the deploy root (in a worker thread) and
//              verify every file against its manifest and signature (kernel/release/install.ts).
// checking     (check) the release goes the way asked (`kernel upgrade` only to a newer release,
//              `kernel downgrade` only to an older one, neither to the one running), can run
//              here, its preUpgrade hooks pass, and the HTTP listeners it adds are open (a taken
//              port refuses it now). The swap is of the release's whole set of services: those it
//              adds or removes are the swap's to check too.
// swapping     (check, prepare, suspend, migrate, switch) the services move to the new code
//              (service-swap.ts, hot-swap.ts); the new HTTP routes take over in the switch's turn.
//              From the switch on the new release runs, whatever comes next.
// watching     (probation) probation.ts watches the new release; a crash or a failed health check
//              sends the kernel back to the release it came from.
// committing   (commit) the registry records the release (permanent, or on trial with
//              --no-commit); if it cannot, the kernel goes back too.
// reverting    the previous release again: services that crashed start in its code from their
//              last state, the others go back through an ordinary swap; its routes come back.
//
// Each upgrade writes exactly one audit line saying what really happened (ok, refused,
// rolled-back, revert-failed or failed), whatever ended it; a release it installed for nothing
// is removed again; and probation never outlives it. The registry is written in one place
// (#recordInRegistry), the front door staged in one (#stageHttp).

import semver from 'semver';
import { TheseusError, errorMessage, inPhase, theseusError } from '../../common/errors.ts';
import { hangIfFaulted } from '../../common/faults.ts';
import type { PhaseEvent, UpgradePhase } from '../../common/phases.ts';
import type { ServiceSource } from '../../common/protocol.ts';
import type { FrontDoorStats } from '../../common/status.ts';
import { roundMs } from '../../common/time.ts';
import { discardInstall, forgetRegistration, installRelease, verifyReleaseDir } from '../../release/install.ts';
import type { HttpConfig, Manifest } from '../../release/manifest.ts';
import { findEntry, readRegistry, registryFile, withCurrent, withPermanent, writeRegistry } from '../../release/registry.ts';
import type { AuditEntry } from '../audit.ts';
import { assertCompatible, serviceSources } from '../deploy-root.ts';
import { runHooks } from '../hooks.ts';
import { watchProbation, type ProbationKernel } from './probation.ts';
import { SwapError, type SwapReport, type SwapTarget } from './report.ts';
import { checkTransition, type TransitionTable } from '../../common/lifecycle.ts';

type UpgradeState =
  | 'idle'
  | 'installing'
  | 'checking'
  | 'swapping'
  | 'watching'
  | 'committing'
  | 'committed'
  | 'refused'
  | 'rolled-back'
  | 'failed'
  | 'reverting'
  | 'reverted'
  | 'revert-failed';

const allowedTransitions: TransitionTable<UpgradeState> = {
  idle: ['installing'],
  installing: ['checking', 'failed'],
  checking: ['swapping', 'refused', 'failed'],
  swapping: ['watching', 'refused', 'rolled-back', 'failed'],
  watching: ['committing', 'reverting', 'failed'],
  committing: ['committed', 'reverting', 'failed'],
  reverting: ['reverted', 'revert-failed'],
  committed: [],
  refused: [],
  'rolled-back': [],
  failed: [],
  reverted: [],
  'revert-failed': [],
};

/** What the upgrade needs of the kernel: its swaps, its probation, its health checks. */
export interface UpgradeKernel extends ProbationKernel {
  upgrade(target: SwapTarget): Promise<SwapReport>;
  downgrade(target: SwapTarget): Promise<SwapReport>;
  abandonProbation(): void;
  revertCrashed(service: string, into: { release: string; source: ServiceSource }): Promise<void>;
}

/** The HTTP listeners of a release, opened before its swap, switched at its switch. */
export interface StagedHttp {
  commit(): void;
  abort(): Promise<void>;
}

/** What the upgrade needs of the program around the kernel (the daemon). */
export interface UpgradeHost {
  root: string;
  kernel: UpgradeKernel;
  frontDoor: { stage(config: HttpConfig | null): Promise<StagedHttp>; stats(): FrontDoorStats };
  /** The release the kernel runs, and its manifest; set when that changes. */
  running(): { version: string; manifest: Manifest };
  setRunning(version: string, manifest: Manifest): void;
  /** Remembers a release's manifest hash; returns those of the given releases, for audit lines. */
  rememberHash(version: string, sha256: string): void;
  hashes(...versions: string[]): Record<string, string>;
  audit(entry: AuditEntry): Promise<void>;
  log(level: 'info' | 'warn' | 'error', message: string): void;
}

/** What `kernel upgrade` and `kernel downgrade` answer when the upgrade went through. */
export interface UpgradeResult {
  from: string;
  to: string;
  committed: boolean;
  report: SwapReport;
}

export class ReleaseUpgrade {
  #state: UpgradeState = 'idle';
  #host: UpgradeHost;
  #source: string;
  #commit: boolean;
  /** Which way the request goes: `kernel upgrade` or `kernel downgrade`. */
  #direction: 'upgrade' | 'downgrade';
  /** The request itself was refused (the wrong way, or the running release): nothing was tried. */
  #requestRefused = false;
  #emit: (event: PhaseEvent) => void;
  /** Each phase's time, for the audit line. */
  #durations: Partial<Record<UpgradePhase, number>> = {};
  #from: string;
  #to: string | null = null;
  /** The release this request installed, if it did: a refusal takes it away again. */
  #installedHere: string | null = null;
  /** A release folder already in place that this request only added to the registry. */
  #registeredHere: string | null = null;
  /** Whether the new code ever served: after that a checkpoint may name it, so it stays installed. */
  #served = false;
  #started = performance.now();
  /** When the service swap began (0 before): the check phase's own half ends there. */
  #swapStarted = 0;
  #checkTold = false;
  #checkDetail = '';

  constructor(host: UpgradeHost, request: { source: string; commit: boolean; direction: 'upgrade' | 'downgrade' }, emit: (event: PhaseEvent) => void) {
    this.#host = host;
    this.#source = request.source;
    this.#commit = request.commit;
    this.#direction = request.direction;
    this.#emit = emit;
    this.#from = host.running().version;
  }

  async run(): Promise<UpgradeResult> {
    const from = this.#from;
    const op = this.#direction;
    try {
      this.#transition('installing');
      const installed = await installRelease(this.#host.root, this.#source);
      const to = (this.#to = installed.version);
      this.#host.rememberHash(to, installed.manifestSha256);
      this.#checkDetail = installed.alreadyInstalled ? `${to} was already installed` : `${to} installed and verified`;
      if (installed.alreadyInstalled && installed.registeredHere) this.#registeredHere = to;
      if (!installed.alreadyInstalled) {
        this.#installedHere = to;
        await this.#host.audit({ op: 'install', from: null, to, hashes: this.#host.hashes(to), outcome: 'ok', durations: { ...this.#durations } });
      }

      this.#transition('checking');
      await this.#checkDirection(to, installed.alreadyInstalled);
      assertCompatible(installed.manifest);
      await runHooks('preUpgrade', installed.manifest.hooks.preUpgrade, this.#host.root, { THESEUS_RELEASE: to, THESEUS_FROM: from });
      const http = await this.#stageHttp(installed.manifest.http ?? null);

      this.#transition('swapping');
      this.#swapStarted = performance.now();
      const watched = installed.manifest.probationMs > 0;
      let report: SwapReport;
      /** A new worker that died as it took over, on probation: reverted like any probation crash. */
      let lostAtSwitch: { service: string; reason: string } | null = null;
      try {
        report = await this.#host.kernel.upgrade({
          release: to,
          services: serviceSources(installed.dir, installed.manifest),
          // The release's whole set: services it adds start, those it leaves out are removed.
          complete: true,
          // The new routes take over in the turn the new code starts serving.
          onSwitch: () => http.commit(),
          // From the switch on, a crash of the new code is left for the revert, not restarted.
          probation: watched,
          onPhase: (event) => this.#record(event),
        });
      } catch (error) {
        const decided = error instanceof SwapError && error.report.outcome === 'failed-after-switch';
        if (!decided) {
          await http.abort();
          throw error;
        }
        // Past the switch the new code serves, even if one service failed as it took over.
        http.commit();
        this.#served = true;
        this.#host.setRunning(to, installed.manifest);
        if (!watched) throw error;
        report = error.report;
        lostAtSwitch = { service: error.service ?? 'a service', reason: `its new worker failed as it took over (${error.message})` };
      }
      this.#served = true;
      this.#host.setRunning(to, installed.manifest);

      this.#transition('watching');
      const watchStarted = performance.now();
      const verdict = lostAtSwitch ?? (await watchProbation(this.#host.kernel, installed.manifest.probationMs));
      if (verdict) {
        const revert = await this.#revert(verdict.service, verdict.reason, 'probation');
        this.#phase('probation', watchStarted, `${verdict.service} unhealthy: ${verdict.reason}; ${revert}`);
        throw inPhase(theseusError('E_PROBATION_FAILED', verdict.service, to, verdict.reason, revert), 'probation');
      }
      this.#phase('probation', watchStarted, watched ? 'healthy' : 'off (probationMs is 0)');
      await hangIfFaulted('probation', (message) => this.#host.log('warn', message));

      this.#transition('committing');
      const commitStarted = performance.now();
      try {
        await this.#recordInRegistry(to, this.#commit);
      } catch (error) {
        // The registry must tell the truth about what runs: if it cannot record the new release,
        // the old one comes back, with its state carried down.
        const revert = await this.#revert('registry', errorMessage(error), 'commit');
        throw inPhase(theseusError('E_REGISTRY_WRITE_FAILED', registryFile(this.#host.root), `${errorMessage(error)}. ${revert}`), 'commit');
      }
      await hangIfFaulted('commit', (message) => this.#host.log('warn', message));
      const outcome = this.#commit ? `${to} is permanent` : `${to} is on trial: 'kernel commit' makes it permanent, a restart reverts it`;
      this.#phase('commit', commitStarted, outcome);
      this.#host.log('info', `${op} ${from} -> ${to} done: ${outcome}`);
      await runHooks('postUpgrade', installed.manifest.hooks.postUpgrade, this.#host.root, { THESEUS_RELEASE: to, THESEUS_FROM: from }).catch((error: unknown) =>
        this.#host.log('warn', errorMessage(error)),
      );
      this.#transition('committed');
      await this.#host.audit({ op, from, to, hashes: this.#host.hashes(from, to), outcome: 'ok', durations: this.#durations });
      return { from, to, committed: this.#commit, report };
    } catch (error) {
      const coded = inPhase(error, this.#failedPhase());
      this.#endInFailure(error);
      if (this.#installedHere !== null) coded.message = `${coded.message} ${await discardInstall(this.#host.root, this.#installedHere, this.#served)}`;
      if (this.#registeredHere !== null && !this.#served) {
        await forgetRegistration(this.#host.root, this.#registeredHere).catch((forgetError: unknown) =>
          this.#host.log('warn', `release ${this.#registeredHere} stays in the registry as unpacked: ${errorMessage(forgetError)}`),
        );
      }
      // The audit line must not hide the error it records.
      await this.#host
        .audit({
          op,
          from,
          to: this.#to,
          hashes: this.#host.hashes(from, ...(this.#to ? [this.#to] : [])),
          outcome: this.#outcome(),
          ...(coded.phase ? { phase: coded.phase } : {}),
          reason: coded.message,
          code: coded.code,
          durations: this.#durations,
        })
        .catch((auditError: unknown) => this.#host.log('error', `the audit trail could not be written: ${errorMessage(auditError)}`));
      throw coded;
    } finally {
      // Probation never outlives its upgrade, whatever ended it (a no-op once it has ended).
      this.#host.kernel.abandonProbation();
    }
  }

  /**
   * Refuses a request that makes no sense as asked: the release that runs already, or a release
   * the other verb is for. Before anything is checked or changed, so the message says only that.
   */
  async #checkDirection(to: string, alreadyInstalled: boolean): Promise<void> {
    const from = this.#from;
    let refusal: TheseusError | null = null;
    // A release installed for this request goes again with the refusal: then only its path names it.
    const target = alreadyInstalled ? to : this.#source;
    if (to === from) refusal = theseusError('E_RELEASE_ALREADY_RUNNING', to, findEntry(await readRegistry(this.#host.root), to)?.status === 'current');
    else if (this.#direction === 'upgrade' && semver.lt(to, from)) refusal = theseusError('E_UPGRADE_IS_DOWNGRADE', to, from, target);
    else if (this.#direction === 'downgrade' && semver.gt(to, from)) refusal = theseusError('E_DOWNGRADE_IS_UPGRADE', to, from, target);
    if (!refusal) return;
    this.#requestRefused = true;
    throw refusal;
  }

  #transition(next: UpgradeState): void {
    this.#state = checkTransition(allowedTransitions, 'an upgrade', this.#state, next);
  }

  /** A phase of this machine's own ended: recorded for the audit line and shown as progress. */
  #phase(phase: UpgradePhase, started: number, detail: string): void {
    this.#record({ phase, ms: roundMs(performance.now() - started), detail });
  }

  /**
   * A phase ended. The check phase has two halves, the release's (install, compatibility, hooks,
   * listeners) and the service swap's (plans, migration paths): told as one, with both times,
   * before any later phase.
   */
  #record(event: PhaseEvent): void {
    if (!this.#checkTold && event.phase !== 'check') this.#record({ phase: 'check', ms: 0 });
    if (event.phase === 'check') {
      if (this.#checkTold) return;
      this.#checkTold = true;
      const releaseHalf = (this.#swapStarted > 0 ? this.#swapStarted : performance.now()) - this.#started;
      event = { phase: 'check', ms: roundMs(releaseHalf + event.ms), detail: [this.#checkDetail, event.detail].filter(Boolean).join('; ') };
    }
    this.#durations[event.phase] = event.ms;
    this.#emit(event);
  }

  /** The phase a failure happened in, from where the machine stood. */
  #failedPhase(): UpgradePhase {
    switch (this.#state) {
      case 'watching':
      case 'reverting':
        return 'probation';
      case 'committing':
        return 'commit';
      default:
        return 'check';
    }
  }

  /** The terminal state of a failed upgrade, from where it stood and what the error says. */
  #endInFailure(error: unknown): void {
    if (this.#state === 'reverted' || this.#state === 'revert-failed') return;
    if (this.#requestRefused) {
      this.#transition('refused');
      return;
    }
    if (error instanceof SwapError && this.#state === 'swapping') {
      this.#transition(error.report.outcome === 'refused' ? 'refused' : error.report.outcome === 'rolled-back' ? 'rolled-back' : 'failed');
      return;
    }
    // Before the swap, nothing ran: but a release that cannot be installed or checked (a full
    // disk, a hook that fails) is a failed upgrade, not a refusal of the release's services.
    this.#transition('failed');
  }

  /** What the audit line says happened. */
  #outcome(): AuditEntry['outcome'] {
    switch (this.#state) {
      case 'reverted':
      case 'rolled-back':
        return 'rolled-back';
      case 'revert-failed':
        return 'revert-failed';
      case 'refused':
        return 'refused';
      default:
        return 'failed';
    }
  }

  /**
   * Records `version` as the running release (current), and as permanent when asked. The one
   * place an upgrade writes the registry.
   */
  async #recordInRegistry(version: string, permanent: boolean): Promise<void> {
    let registry = withCurrent(await readRegistry(this.#host.root), version);
    if (permanent) registry = withPermanent(registry, version);
    await writeRegistry(this.#host.root, registry);
  }

  /**
   * Opens the listeners a release adds (a port that is taken refuses it now, before anything
   * changed) and prepares its routes, which take over at commit(). When a revert cannot reopen
   * one of the old release's ports, the routes that can come back still do, on the listeners
   * already open, and the problem is returned to be reported.
   */
  async #stageHttp(config: HttpConfig | null, bestEffort = false): Promise<StagedHttp & { problem?: string }> {
    if (!bestEffort) return this.#host.frontDoor.stage(config);
    try {
      return await this.#host.frontDoor.stage(config);
    } catch (error) {
      const staged = await this.#host.frontDoor.stage(keepListeners(config, this.#host.frontDoor.stats().listeners));
      return Object.assign(staged, { problem: errorMessage(error) });
    }
  }

  /**
   * Goes back to the release the upgrade came from (still installed and unchanged in the
   * registry), carrying the state down. A service that crashed on probation has no worker left to
   * suspend: it starts again in the old code from its last state (in reply durability, every
   * change a caller was told of). The others go back through an ordinary hot swap. Returns what
   * happened, in one sentence for the user.
   */
  async #revert(service: string, reason: string, phase: 'probation' | 'commit'): Promise<string> {
    this.#transition('reverting');
    const version = this.#from;
    const dir = `${this.#host.root}/releases/${version}`;
    let http: (StagedHttp & { problem?: string }) | null = null;
    try {
      const { manifest } = await verifyReleaseDir(dir);
      const sources = serviceSources(dir, manifest);
      http = await this.#stageHttp(manifest.http ?? null, true);
      const staged = http;
      // A service may crash while the revert swaps it back: it is then reverted from its crash on
      // the next round. The rounds are few; past them the revert has failed.
      for (let round = 1; ; round++) {
        for (const crash of this.#host.kernel.probationCrashes()) {
          const source = sources[crash.service];
          // A service the new release added has nothing to go back to: the downgrade removes it.
          if (!source) continue;
          await this.#host.kernel.revertCrashed(crash.service, { release: version, source });
        }
        try {
          await this.#host.kernel.downgrade({ release: version, services: sources, complete: true, onSwitch: () => staged.commit() });
          break;
        } catch (error) {
          // Every service that changed had crashed and is already back: nothing is left to swap.
          if (error instanceof TheseusError && error.code === 'E_SWAP_NOTHING_TO_DO') break;
          if (round < 3 && this.#host.kernel.probationCrashes().length > 0) continue;
          throw error;
        }
      }
      staged.commit();
      this.#host.setRunning(version, manifest);
      const note = http.problem ? ` Its HTTP listeners could not all be reopened (${http.problem}); the running ones serve its routes.` : '';
      await this.#host.audit({ op: 'rollback', from: null, to: version, hashes: this.#host.hashes(version), outcome: 'ok', phase, reason: `${service}: ${reason}${note}` });
      this.#transition('reverted');
      return `Reverted to ${version}, with the state carried back.${note}`;
    } catch (error) {
      await http?.abort();
      const stillRunning = this.#host.running().version;
      // The new release keeps running: record it as on trial, so the registry tells the truth and
      // a restart boots the permanent one.
      await this.#recordInRegistry(stillRunning, false).catch(() => undefined);
      await this.#host
        .audit({ op: 'rollback', from: null, to: version, hashes: this.#host.hashes(version), outcome: 'failed', phase, reason: errorMessage(error) })
        .catch(() => undefined);
      this.#transition('revert-failed');
      return `Could not revert to ${version} (${errorMessage(error)}); ${stillRunning} stays running on trial and a restart boots the permanent release.`;
    } finally {
      // Whatever is still crashed goes to supervision: probation never outlives its verdict.
      this.#host.kernel.abandonProbation();
    }
  }
}

/** `config` limited to the listeners already open: the routes a revert can restore without a new port. */
function keepListeners(config: HttpConfig | null, open: ReadonlyArray<{ host: string; configuredPort: number }>): HttpConfig | null {
  if (!config) return null;
  const listeners = config.listeners.filter((listener) => open.some((o) => o.host === listener.host && o.configuredPort === listener.port));
  return listeners.length > 0 ? { ...config, listeners } : null;
}
