// `kernel dashboard`: where the running kernel's admin listener is (/metrics and the live page),
// its token, and how to reach it from another machine over ssh. Read from the files the kernel
// keeps in var/ (admin.json, admin-token), so it loads none of the kernel. Runs in the CLI's process.

import { readFile } from 'node:fs/promises';
import { hostname, userInfo } from 'node:os';
import { theseusError } from '../common/errors.ts';
import { runningPid, varPaths } from '../common/deploy-paths.ts';
import { commandName } from './invocation.ts';

export interface DashboardInfo {
  pid: number;
  host: string;
  port: number;
  token: string;
  /** The page, with the token (opening it once sets a cookie and takes the token out of the address). */
  pageUrl: string;
  metricsUrl: string;
  /** What to run on one's own machine to reach a kernel bound to loopback on a server. */
  ssh: string;
}

export async function dashboardInfo(root: string): Promise<DashboardInfo> {
  const paths = varPaths(root);
  const pid = await runningPid(root);
  if (pid === null) throw theseusError('E_KERNEL_NOT_RUNNING', root, 'no live pid in var/kernel.pid');
  const endpoint = JSON.parse((await readFile(paths.admin, 'utf8').catch(() => null)) ?? 'null') as { host: string; port: number; pid: number } | null;
  // A file left by an earlier kernel names a port nobody listens on any more.
  if (!endpoint || endpoint.pid !== pid) throw theseusError('E_ADMIN_NOT_LISTENING', root, `${commandName()} start`);
  const token = (await readFile(paths.adminToken, 'utf8')).trim();
  const host = endpoint.host.includes(':') ? `[${endpoint.host}]` : endpoint.host;
  const base = `http://${host}:${endpoint.port}`;
  const loopback = endpoint.host === '127.0.0.1' || endpoint.host === '::1' || endpoint.host === 'localhost';
  return {
    pid,
    host: endpoint.host,
    port: endpoint.port,
    token,
    pageUrl: `${base}/?token=${token}`,
    metricsUrl: `${base}/metrics`,
    ssh: `ssh -N -L ${endpoint.port}:${loopback ? endpoint.host : host}:${endpoint.port} ${userInfo().username}@${hostname()}`,
  };
}

export function formatDashboard(info: DashboardInfo): string[] {
  return [
    `Dashboard of the kernel (pid ${info.pid}), read-only:`,
    `  page:     ${info.pageUrl}`,
    `  metrics:  ${info.metricsUrl}   (Prometheus: Authorization: Bearer <token>)`,
    `  token:    ${info.token}`,
    `From another machine, forward the port over ssh, then open the page's address there:`,
    `  ${info.ssh}`,
    `Scrape it by hand: curl -H 'Authorization: Bearer ${info.token}' ${info.metricsUrl}`,
  ];
}
