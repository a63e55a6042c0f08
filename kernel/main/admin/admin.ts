// The daemon's admin side, put together: the metrics, the dashboard's feed and the listener that
// serves both, and the record of each upgrade as it ends. `kernel dashboard` reads where it
// listens from var/admin.json. Runs in the kernel's main thread.

import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { VarPaths } from '../../common/deploy-paths.ts';
import { preciseNow } from '../../common/time.ts';
import { adminAddress } from '../../release/admin-config.ts';
import { writeFileAtomic } from '../../release/fs-atomic.ts';
import type { AdminConfig } from '../../release/manifest.ts';
import type { AuditEntry } from '../audit.ts';
import type { HttpFrontDoor } from '../http-front-door.ts';
import type { Kernel } from '../kernel.ts';
import { KernelMetrics } from '../metrics.ts';
import type { SwapReport } from '../upgrade/report.ts';
import { AdminServer } from './admin-server.ts';
import { DashboardFeed } from './dashboard-feed.ts';

/** How often the workers' counters are read when nobody scrapes them. */
const COLLECT_EVERY_MS = 2000;

/** What var/admin.json holds. */
export interface AdminEndpoint {
  host: string;
  port: number;
  pid: number;
}

export interface AdminOptions {
  config: AdminConfig | undefined;
  paths: VarPaths;
  token: string;
  kernel: Kernel;
  frontDoor: HttpFrontDoor | null;
  kernelInfo(): { app: string; release: string; startedAt: number };
  releases(): Promise<Array<{ version: string; status: string; running: boolean }>>;
  log(level: 'info' | 'warn' | 'error', message: string): void;
  tickMs?: number;
}

export interface Admin {
  metrics: KernelMetrics;
  address: { host: string; port: number };
  /** Follows one upgrade or downgrade: its audit line, then its end. */
  watchSwap(op: 'upgrade' | 'downgrade', from: string): { audited(entry: AuditEntry): void; ended(outcome: unknown): void };
  close(): Promise<void>;
}

/** Starts the admin listener, or returns null when the release turns it off. */
export async function startAdmin(options: AdminOptions): Promise<Admin | null> {
  const address = adminAddress(options.config);
  await rm(options.paths.admin, { force: true });
  if (!address) return null;
  const { kernel, frontDoor } = options;
  const metrics = new KernelMetrics({
    status: () => kernel.status(),
    callMetrics: () => kernel.callMetrics(),
    frontDoor: () => (frontDoor && frontDoor.state !== 'idle' ? { stats: frontDoor.stats(), openConnections: frontDoor.openConnections() } : null),
    // Where deploy-root.ts keeps the checkpoints.
    stateDir: join(options.paths.dir, 'state'),
  });
  const feed = new DashboardFeed({ metrics, kernelInfo: options.kernelInfo, releases: options.releases, auditFile: options.paths.audit });
  const server = await AdminServer.listen({ ...address, token: options.token, metrics, feed, log: options.log, ...(options.tickMs ? { tickMs: options.tickMs } : {}) });
  // A worker's counts go with it when a swap retires it or it crashes: read them now and then even
  // when nobody scrapes, so a release's total loses at most the calls since the last reading.
  const reader = setInterval(() => void metrics.collect().catch(() => undefined), COLLECT_EVERY_MS);
  reader.unref();
  const bound = server.address;
  await writeFileAtomic(options.paths.admin, `${JSON.stringify({ ...bound, pid: process.pid } satisfies AdminEndpoint)}\n`, 0o600);
  options.log('info', `admin listener on http://${hostInUrl(bound.host)}:${bound.port} (/metrics and the dashboard; 'kernel dashboard' prints the token)`);
  return {
    metrics,
    address: bound,
    watchSwap(op, from) {
      const startedAt = preciseNow();
      // The old workers' last reading before the swap retires them.
      void metrics.collect().catch(() => undefined);
      let audit: AuditEntry | null = null;
      return {
        audited(entry) {
          if (entry.op === op) audit = entry;
        },
        ended(outcome) {
          const report = (outcome as { report?: SwapReport } | null)?.report;
          const pauseMs: Record<string, number> = {};
          for (const service of report?.services ?? []) if (service.outcome === 'switched' || service.outcome === 'failed-after-switch') pauseMs[service.service] = service.pauseMs;
          const entry = audit as AuditEntry | null;
          metrics.recordSwap({
            op,
            from,
            to: entry?.to ?? null,
            outcome: entry?.outcome ?? 'failed',
            startedAt,
            endedAt: preciseNow(),
            phaseMs: { ...(entry?.durations ?? {}) },
            pauseMs,
          });
        },
      };
    },
    async close() {
      clearInterval(reader);
      await server.close();
      await rm(options.paths.admin, { force: true });
    },
  };
}

/** An IPv6 address goes in brackets in a URL. */
export function hostInUrl(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}
