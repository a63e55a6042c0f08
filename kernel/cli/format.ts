// Text formatting shared by the CLI's verbs and the console. Runs in the CLI's process.

import type { SwapResult } from '../common/control-protocol.ts';

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
  const change = service.change === 'config' ? 'config changed, ' : '';
  const details = [
    service.drainMs > 0 ? `${service.drainMs} ms of the pause finishing the running handler` : '',
    service.carried > 0 ? `${service.carried} queued messages carried over` : '',
  ].filter(Boolean);
  return `${service.service}: ${service.from.release} (vsn ${service.from.vsn}) -> ${service.to.release} (vsn ${service.to.vsn}), ${change}migration ${service.migration}, state ${service.stateBytes} bytes, pause ${service.pauseMs} ms, ${service.outcome}${details.length > 0 ? ` (${details.join('; ')})` : ''}`;
}
