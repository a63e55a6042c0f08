// The phases of an upgrade, named once. Every part of Theseus speaks of an upgrade in these words:
// an error says in which phase it happened, a report times each one, an audit line records where
// an upgrade stopped, and `kernel upgrade` and the console print each as it ends. The machines
// that run them are in kernel/main/upgrade/.
//
//   check -> prepare -> suspend -> migrate -> switch -> probation -> commit
//
// Until the switch, a failure leaves the running release as it was (refused in check, rolled
// back after). From the switch on the new code serves; probation can still send
// the kernel back (a revert), and commit makes the release permanent.

export const UPGRADE_PHASES = ['check', 'prepare', 'suspend', 'migrate', 'switch', 'probation', 'commit'] as const;

export type UpgradePhase = (typeof UPGRADE_PHASES)[number];

/** What each phase does, in one line: for the console's help and the CLI's. */
export const PHASE_DESCRIPTIONS: Readonly<Record<UpgradePhase, string>> = {
  check: 'install and verify the release (every file against its manifest), plan each service, find every migration path; nothing running is touched',
  prepare: 'boot the new workers (and warm new pools) while the old ones serve',
  suspend: 'old workers start no handler, finish the one running, and hand over state, ports and backlog',
  migrate: 'the new workers adopt the state, migrated up in the new code (or down in the old, newer one)',
  switch: 'in one turn every new worker gets its ports and the backlog runs on; the old workers end',
  probation: 'the new release is watched: a crash or a failed health check reverts it',
  commit: 'the registry records the release (permanent, or on trial) and the audit trail the upgrade',
};

/** A phase as it ends: what the CLI and the console print as an upgrade goes. */
export interface PhaseEvent {
  phase: UpgradePhase;
  /** How long it took. */
  ms: number;
  /** One line about it, e.g. each service's pause after the switch. */
  detail?: string;
}
