// Text formatting shared by the CLI's verbs and the console. Runs in the CLI's process.

import type { PhaseEvent, ReleaseEntry, StatusResult, SwapResult } from '../common/control-protocol.ts';
import type { LogRecord } from '../common/protocol.ts';

/** One phase of an upgrade as it ends: its name, its time, and what it did. */
export function formatPhase(event: PhaseEvent): string {
  return `  ${event.phase.padEnd(10)} ${`${event.ms.toFixed(1)} ms`.padStart(10)}${event.detail ? `  ${event.detail}` : ''}`;
}

/** Errors about the swap request itself, raised before anything began: said without a phase. */
const REQUEST_REFUSALS: ReadonlySet<string> = new Set([
  'E_UPGRADE_IS_DOWNGRADE',
  'E_DOWNGRADE_IS_UPGRADE',
  'E_RELEASE_ALREADY_RUNNING',
  'E_RELEASE_NOT_FOUND',
  'E_RELEASE_NOT_INSTALLED',
  'E_RELEASE_NOT_A_RELEASE',
]);

/**
 * A failed upgrade or downgrade, for one line: what became of it (refused, rolled back, failed), in
 * which phase (none for a request refused as asked), and the reason, each said once.
 */
export function describeSwapFailure(error: { code: string; message: string; phase?: string }): { verdict: string; phase: string | null; reason: string } {
  if (REQUEST_REFUSALS.has(error.code)) return { verdict: 'refused', phase: null, reason: error.message };
  // A swap's own failure says already which it was, and in which phase: "Rolled back in phase 'migrate': ...".
  const told = /^(Refused|Rolled back|Failed after the switch) in phase '([\w-]+)': /.exec(error.message);
  if (told) return { verdict: told[1]!.toLowerCase(), phase: told[2]!, reason: error.message.slice(told[0].length) };
  return { verdict: 'failed', phase: error.phase ?? null, reason: error.message };
}

/** Left-aligned columns, two spaces apart. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((cell, column) => Math.max(cell.length, ...rows.map((row) => row[column]!.length)));
  return [header, ...rows].map((row) => row.map((cell, column) => cell.padEnd(widths[column]!)).join('  ').trimEnd()).join('\n');
}

/** 42s, 3m5s, 2h10m. */
export function formatDuration(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  if (seconds < 60) return `${seconds}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m${seconds % 60}s`;
  return `${Math.floor(seconds / 3600)}h${Math.floor((seconds % 3600) / 60)}m`;
}

/**
 * One service's line of an upgrade report: what changed, the migration, the state moved, and the
 * pause (with the part of it the old code spent finishing the handler it was running).
 */
export function formatServiceSwap(service: SwapResult['report']['services'][number]): string {
  if (service.change === 'added') return `${service.service}: added in ${service.to.release} (vsn ${service.to.vsn}), ${service.migration}, state ${service.stateBytes} bytes, ${service.outcome}`;
  if (service.change === 'removed') return `${service.service}: ${service.from.release} (vsn ${service.from.vsn}) removed in ${service.to.release}, drained, its last state kept, ${service.outcome}`;
  const change = service.change === 'config' ? 'config changed, ' : '';
  const details = [
    service.drainMs > 0 ? `${service.drainMs} ms of the pause finishing the running handler` : '',
    service.carried > 0 ? `${service.carried} queued messages carried over` : '',
    service.precopy ? `${service.precopy.entries} store entries pre-copied in ${service.precopy.rounds} rounds while serving` : '',
  ].filter(Boolean);
  return `${service.service}: ${service.from.release} (vsn ${service.from.vsn}) -> ${service.to.release} (vsn ${service.to.vsn}), ${change}migration ${service.migration}, state ${service.stateBytes} bytes, pause ${service.pauseMs} ms, ${service.outcome}${details.length > 0 ? ` (${details.join('; ')})` : ''}`;
}

/** `kernel status` and the console's .status: the release, a line per service, the front door. */
export function formatStatus(status: StatusResult): string[] {
  const lines = [
    `${status.app} ${status.release} (permanent: ${status.permanent ?? 'none'}), pid ${status.pid}, up ${formatDuration(status.uptimeMs)}`,
    table(
      ['SERVICE', 'STATE', 'RELEASE', 'VSN', 'UPTIME', 'CALLS', 'CASTS', 'IN FLIGHT', 'QUEUED', 'HEAP', 'DURABILITY'],
      status.services.map((s) => [s.name, s.state, s.release, s.vsn, formatDuration(s.uptimeMs), String(s.callsServed), String(s.castsServed), String(s.inFlight), String(s.queued), `${(s.heapUsed / 1048576).toFixed(1)} MB`, s.durability]),
    ),
  ];
  for (const s of status.services) if (s.failure) lines.push(`  ${s.name} failed: ${s.failure}`);
  if (status.http) {
    const answered = Object.entries(status.http.responses).map(([kind, count]) => `${kind} ${count}`).join(', ');
    const plural = (count: number, noun: string) => `${count} ${noun}${count === 1 ? '' : 's'}`;
    const listeners = status.http.listeners
      .map((l) => `http://${l.host}:${l.port} (${plural(l.routes.length, 'route')}${l.websockets ? `, ${plural(l.websockets.length, 'WebSocket route')}` : ''})`)
      .join(', ');
    const sockets = status.http.websockets;
    // Only for a release that takes WebSocket connections: the others' line reads as before.
    const open = sockets && status.http.listeners.some((l) => l.websockets) ? `; ${plural(sockets.open, 'WebSocket connection')} open` : '';
    lines.push(`http: ${listeners}; ${status.http.requests} requests, ${status.http.inFlight} in flight${answered ? `; ${answered}` : ''}${open}`);
  }
  if (status.health.status !== 'ok') lines.push(`health: ${status.health.status}`);
  for (const kept of status.kept ?? []) {
    lines.push(
      kept.problem
        ? `kept state: ${kept.service} (unreadable: ${kept.problem})`
        : `kept state: ${kept.service} (from ${kept.release}, vsn ${kept.vsn}, ${kept.bytes} bytes, ${kept.at}): not running; a release that brings ${kept.service} back resumes from it`,
    );
  }
  if (status.lastUpgrade) lines.push(`last upgrade: ${status.lastUpgrade.from} -> ${status.lastUpgrade.to} at ${status.lastUpgrade.at}${status.lastUpgrade.committed ? '' : ' (on trial)'}`);
  return lines;
}

/** `kernel releases` and the console's .releases: the registry as a table. */
export function formatReleases(releases: ReleaseEntry[]): string {
  const rows = releases.map((r) => [r.version, r.status, r.running ? 'yes' : '', r.installedAt, r.manifestSha256.slice(0, 12)]);
  // The state kept of services a later release removed, by the release whose code wrote it.
  if (!releases.some((r) => r.keptState)) return table(['VERSION', 'STATUS', 'RUNNING', 'INSTALLED', 'MANIFEST'], rows);
  return table(
    ['VERSION', 'STATUS', 'RUNNING', 'INSTALLED', 'MANIFEST', 'KEPT STATE'],
    rows.map((row, index) => [...row, releases[index]!.keptState?.join(', ') ?? '']),
  );
}

/** Terminal colours, as [on, off] pairs; used only when the output is a terminal. */
export const ANSI = {
  dim: ['\x1b[2m', '\x1b[22m'],
  red: ['\x1b[31m', '\x1b[39m'],
  yellow: ['\x1b[33m', '\x1b[39m'],
  green: ['\x1b[32m', '\x1b[39m'],
  cyan: ['\x1b[36m', '\x1b[39m'],
} as const;

export const LEVEL_COLORS: Record<LogRecord['level'], keyof typeof ANSI> = { debug: 'dim', info: 'green', warn: 'yellow', error: 'red' };
