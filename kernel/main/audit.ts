// The audit trail: var/audit.jsonl, one JSON line per install, upgrade, downgrade, commit, rollback
// and remove. Append-only and fsync'd before the operation is reported done.

import { open } from 'node:fs/promises';
import { userInfo } from 'node:os';

export interface AuditEntry {
  op: 'install' | 'upgrade' | 'downgrade' | 'commit' | 'rollback' | 'remove' | 'start' | 'stop';
  from: string | null;
  to: string | null;
  /** sha256 of each release's manifest involved, by version. */
  hashes: Record<string, string>;
  /**
   * 'rolled-back': the kernel went back to the release it came from (before or after the switch);
   * 'revert-failed': it tried to, after the switch, and could not: the new release still runs.
   */
  outcome: 'ok' | 'failed' | 'rolled-back' | 'refused' | 'revert-failed';
  phase?: string;
  reason?: string;
  code?: string;
  durations?: Record<string, number>;
}

export async function appendAudit(file: string, entry: AuditEntry): Promise<void> {
  const user = userInfo();
  const line = `${JSON.stringify({ time: new Date().toISOString(), uid: user.uid, user: user.username, pid: process.pid, ...entry })}\n`;
  const handle = await open(file, 'a', 0o600);
  try {
    await handle.write(line);
    await handle.sync();
  } finally {
    await handle.close();
  }
}
