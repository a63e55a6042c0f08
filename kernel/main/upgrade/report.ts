// What an upgrade of services reports, whatever ran it: the target it was given, each service's
// outcome with its pause, the time of each phase, and, when it failed, the error with its report.
// Runs in the kernel's main thread; the CLI and the control socket carry the same shapes.

import { TheseusError } from '../../common/errors.ts';
import type { PhaseEvent, UpgradePhase } from '../../common/phases.ts';
import type { ServiceSource } from '../../common/protocol.ts';
import type { ServiceSwapReport } from '../../common/status.ts';
import type { SwapPath } from '../kernel-context.ts';

export type { ServiceSwapReport } from '../../common/status.ts';

export interface SwapTarget {
  release: string;
  /**
   * Each service's entry, and what it declares when a release manifest already says so. Without a
   * descriptor, the check phase learns it from a throwaway worker that only loads the module.
   */
  services: Record<string, ServiceSource>;
  /**
   * Called once, in the same synchronous turn in which the new code starts taking calls (not at
   * all when the swap rolls back): the HTTP front door switches its routes here.
   */
  onSwitch?: () => void;
  /**
   * The switched services go on probation (see Kernel.endProbation): from the switch on, a crash
   * of their new workers is left for the caller to revert instead of being restarted.
   */
  probation?: boolean;
  /**
   * `services` names every service of the new release: a name not running is added (booted in
   * prepare, opened to its callers at the switch) and a running service it does not name is
   * removed (drained after the switch, its last state kept). Without it, a name not running is
   * refused (E_UNKNOWN_SERVICE) and the services not named stay as they are.
   */
  complete?: boolean;
  /** Told as each phase ends (check, prepare, suspend, migrate, switch), for live progress. */
  onPhase?: (event: PhaseEvent) => void;
  /** Internal, for measuring: this swap's path, instead of the kernel's `swapPath` option. */
  swapPath?: SwapPath;
}


export interface SwapReport {
  release: string;
  /**
   * 'switched': every changed service runs the new code; 'refused' (in check: nothing touched) and
   * 'rolled-back' (before the switch: the old workers serve on); 'failed-after-switch': a new
   * worker died as it took over, the others run the new code.
   */
  outcome: 'switched' | 'rolled-back' | 'refused' | 'failed-after-switch';
  /** The phase that failed, when the outcome is not 'switched'. */
  failedPhase?: UpgradePhase;
  error?: { code: string; message: string };
  services: ServiceSwapReport[];
  phaseMs: Partial<Record<UpgradePhase, number>>;
  totalMs: number;
}

export class SwapError extends TheseusError {
  readonly report: SwapReport;
  constructor(cause: TheseusError, report: SwapReport) {
    const verdict = { refused: 'Refused', 'rolled-back': 'Rolled back', 'failed-after-switch': 'Failed after the switch', switched: 'Switched' }[report.outcome];
    super(cause.code, `${verdict} in phase '${cause.phase}': ${cause.message}`, {
      cause,
      phase: cause.phase!,
      ...(cause.service ? { service: cause.service } : {}),
    });
    this.name = 'SwapError';
    this.report = report;
  }
}


/** The report entry of a service the swap left as it was. */
export function unchangedEntry(service: string, release: string, vsn: string): ServiceSwapReport {
  return { service, from: { release, vsn }, to: { release, vsn }, change: 'none', migration: 'none', stateBytes: 0, pauseMs: 0, drainMs: 0, carried: 0, outcome: 'unchanged' };
}
