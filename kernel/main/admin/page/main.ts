// The dashboard page's script, run in the browser: listens to the kernel's ticks (server-sent
// events from /events) and draws the services, the chart with each swap on it, the upgrade
// timeline and the releases. Bundled with uPlot by esbuild (../assets.ts); it loads nothing else.

import uPlot from 'uplot';
import uPlotCss from 'uplot/dist/uPlot.min.css';
import type { DashboardTick, SwapRecord } from '../tick.ts';

/** How much history the chart keeps: ten minutes of one-second ticks. */
const MAX_POINTS = 600;
const PHASE_COLOURS: Record<string, string> = {
  check: '#9aa5b1',
  prepare: '#5b8def',
  suspend: '#e0a030',
  migrate: '#b36ad8',
  switch: '#d8453b',
  probation: '#4caf7a',
  commit: '#2f6e4f',
};

const style = document.createElement('style');
style.textContent = uPlotCss;
document.head.append(style);

const byId = (id: string): HTMLElement => document.getElementById(id)!;
const times: number[] = [];
const rates: Array<number | null> = [];
const p99s: Array<number | null> = [];
const httpP99s: Array<number | null> = [];
let swaps: SwapRecord[] = [];

const chart = new uPlot(
  {
    width: Math.max(400, byId('chart').clientWidth - 10),
    height: 260,
    series: [
      {},
      { label: 'calls/s', stroke: '#3b7dd8', width: 2, scale: 'rate', spanGaps: false },
      { label: 'p99 ms', stroke: '#d8453b', width: 1.5, scale: 'ms', spanGaps: false },
      { label: 'HTTP p99 ms (as clients wait)', stroke: '#e0a030', width: 1.5, dash: [4, 3], scale: 'ms', spanGaps: false },
    ],
    axes: [{}, { scale: 'rate', label: 'calls/s' }, { scale: 'ms', side: 1, label: 'p99 ms', grid: { show: false } }],
    hooks: { draw: [(plot: uPlot) => drawSwaps(plot)] },
  },
  [times, rates, p99s, httpP99s],
  byId('chart'),
);

/** Each swap as a band across the chart, from its start to its end, labelled with its pause. */
function drawSwaps(plot: uPlot): void {
  const context = plot.ctx;
  const { top, height } = plot.bbox;
  for (const swap of swaps) {
    const left = plot.valToPos(swap.startedAt / 1000, 'x', true);
    const right = Math.max(left + 2, plot.valToPos(swap.endedAt / 1000, 'x', true));
    if (right < plot.bbox.left || left > plot.bbox.left + plot.bbox.width) continue;
    context.save();
    context.fillStyle = swap.outcome === 'ok' ? 'rgba(59, 125, 216, 0.15)' : 'rgba(216, 69, 59, 0.18)';
    context.fillRect(left, top, right - left, height);
    context.fillStyle = '#1d232a';
    context.font = `${Math.round(11 * devicePixelRatio)}px system-ui, sans-serif`;
    context.fillText(`${swap.to ?? '?'} pause ${formatMs(maxPause(swap))}`, left + 4, top + 14 * devicePixelRatio);
    context.restore();
  }
}

function maxPause(swap: SwapRecord): number | null {
  const pauses = Object.values(swap.pauseMs);
  return pauses.length > 0 ? Math.max(...pauses) : null;
}

function formatMs(ms: number | null): string {
  if (ms === null) return '–';
  return ms < 10 ? `${ms.toFixed(2)} ms` : `${Math.round(ms)} ms`;
}

function cell(row: HTMLTableRowElement, text: string, className = ''): void {
  const td = row.insertCell();
  td.textContent = text;
  if (className) td.className = className;
}

const number = (value: number | null, digits = 0): string => (value === null ? '–' : value.toLocaleString('en', { maximumFractionDigits: digits, minimumFractionDigits: digits }));

function drawServices(tick: DashboardTick): void {
  const body = (byId('services') as HTMLTableElement).tBodies[0]!;
  body.replaceChildren();
  for (const service of tick.services) {
    const row = body.insertRow();
    row.dataset.service = service.name;
    cell(row, service.name, 'name');
    cell(row, service.release, 'release');
    cell(row, service.vsn, 'vsn');
    cell(row, service.state, 'state');
    cell(row, number(service.callsPerSecond, 1), 'num rate');
    cell(row, number(service.p99Ms, 2), 'num p99');
    cell(row, number(service.calls), 'num calls');
    cell(row, number(service.errors), 'num errors');
    cell(row, number(service.inFlight), 'num');
    cell(row, number(service.queued), 'num');
    cell(row, number(service.heapBytes / 1e6, 1), 'num');
    cell(row, number(service.restarts), 'num');
    cell(row, number(service.stateBytes), 'num');
    cell(row, number(service.checkpointAgeSeconds, 1), 'num');
  }
}

/** calls/s at its lowest and p99 at its highest from a second before a swap to two after it. */
function across(swap: SwapRecord): { minRate: number | null; maxP99: number | null; maxHttpP99: number | null } {
  let minRate: number | null = null;
  let maxP99: number | null = null;
  let maxHttpP99: number | null = null;
  for (let i = 0; i < times.length; i++) {
    const at = times[i]! * 1000;
    if (at < swap.startedAt - 1000 || at > swap.endedAt + 2000) continue;
    const rate = rates[i];
    const p99 = p99s[i];
    if (rate !== null && rate !== undefined) minRate = minRate === null ? rate : Math.min(minRate, rate);
    if (p99 !== null && p99 !== undefined) maxP99 = maxP99 === null ? p99 : Math.max(maxP99, p99);
    const httpP99 = httpP99s[i];
    if (httpP99 !== null && httpP99 !== undefined) maxHttpP99 = maxHttpP99 === null ? httpP99 : Math.max(maxHttpP99, httpP99);
  }
  return { minRate, maxP99, maxHttpP99 };
}

function drawTimeline(): void {
  const timeline = byId('timeline');
  if (swaps.length === 0) return;
  timeline.replaceChildren();
  for (const swap of [...swaps].reverse()) {
    const entry = document.createElement('div');
    entry.className = swap.outcome === 'ok' ? 'swap' : 'swap failed';
    entry.dataset.swapTo = swap.to ?? '';
    entry.dataset.outcome = swap.outcome;
    const title = document.createElement('div');
    const at = new Date(swap.startedAt).toLocaleTimeString();
    title.textContent = `${at} ${swap.op} ${swap.from} → ${swap.to ?? '?'}: ${swap.outcome}, ${formatMs(swap.endedAt - swap.startedAt)} in all`;
    const bar = document.createElement('div');
    bar.className = 'phases';
    const total = Object.values(swap.phaseMs).reduce((sum, ms) => sum + ms, 0) || 1;
    for (const [phase, ms] of Object.entries(swap.phaseMs)) {
      const part = document.createElement('span');
      part.style.width = `${(100 * ms) / total}%`;
      part.style.background = PHASE_COLOURS[phase] ?? '#777';
      part.title = `${phase} ${formatMs(ms)}`;
      bar.append(part);
    }
    const phases = document.createElement('div');
    phases.className = 'legend';
    phases.textContent = Object.entries(swap.phaseMs)
      .map(([phase, ms]) => `${phase} ${formatMs(ms)}`)
      .join(' · ');
    const pauses = document.createElement('div');
    pauses.className = 'pause';
    const paused = Object.entries(swap.pauseMs);
    pauses.textContent = paused.length > 0 ? `pause: ${paused.map(([service, ms]) => `${service} ${formatMs(ms)}`).join(', ')}` : 'pause: no service was switched';
    const line = document.createElement('div');
    line.className = 'legend across';
    const { minRate, maxP99, maxHttpP99 } = across(swap);
    line.textContent = `across it: calls/s at least ${number(minRate, 1)}, p99 at most ${formatMs(maxP99)}${maxHttpP99 === null ? '' : `, HTTP p99 at most ${formatMs(maxHttpP99)}`}`;
    entry.append(title, bar, phases, pauses, line);
    timeline.append(entry);
  }
}

function drawReleases(tick: DashboardTick): void {
  const body = (byId('releases') as HTMLTableElement).tBodies[0]!;
  body.replaceChildren();
  for (const release of tick.releases) {
    const row = body.insertRow();
    row.dataset.release = release.version;
    cell(row, release.version);
    cell(row, release.status);
    cell(row, release.running ? 'running' : '');
  }
  byId('audit').textContent = tick.audit.map(auditLine).join('\n');
}

/** An audit line as a person reads it: when, what, from and to, how it ended (and why, if it failed). */
function auditLine(line: string): string {
  try {
    const entry = JSON.parse(line) as { time: string; op: string; from: string | null; to: string | null; outcome: string; user?: string; reason?: string };
    const move = entry.from && entry.to ? `${entry.from} → ${entry.to}` : (entry.to ?? entry.from ?? '');
    return `${entry.time.replace('T', ' ').replace(/\.\d+Z$/, 'Z')}  ${entry.op} ${move}  ${entry.outcome}${entry.user ? ` (${entry.user})` : ''}${entry.reason ? `: ${entry.reason}` : ''}`;
  } catch {
    return line;
  }
}

function onTick(tick: DashboardTick): void {
  byId('app').textContent = tick.app;
  byId('kernel').textContent = `release ${tick.release} · pid ${tick.pid} · up ${Math.round(tick.uptimeMs / 1000)} s${tick.http ? ` · HTTP ${tick.http.openConnections} connections, ${tick.http.requests} requests` : ''}`;
  const live = byId('live');
  live.textContent = `live, ${new Date(tick.at).toLocaleTimeString()}`;
  live.className = '';
  times.push(tick.at / 1000);
  rates.push(tick.total.callsPerSecond);
  p99s.push(tick.total.p99Ms);
  httpP99s.push(tick.http?.p99Ms ?? null);
  if (times.length > MAX_POINTS) {
    times.shift();
    rates.shift();
    p99s.shift();
    httpP99s.shift();
  }
  swaps = tick.swaps;
  chart.setData([times, rates, p99s, httpP99s]);
  drawServices(tick);
  drawTimeline();
  drawReleases(tick);
}

const events = new EventSource('/events');
events.onmessage = (message) => onTick(JSON.parse(message.data as string) as DashboardTick);
events.onerror = () => {
  const live = byId('live');
  live.textContent = 'disconnected: retrying';
  live.className = 'stale';
};
window.addEventListener('resize', () => chart.setSize({ width: Math.max(400, byId('chart').clientWidth - 10), height: 260 }));
