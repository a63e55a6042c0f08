// The admin listener's address (`admin` in theseus.config.ts): checked when a release is built,
// and filled in with its defaults when the kernel starts. Runs in the CLI's process and the
// kernel's main thread.

import { isIP } from 'node:net';
import { theseusError } from '../common/errors.ts';
import type { AdminConfig } from './manifest.ts';

/** Loopback only by default: reach it from elsewhere with `ssh -L`, never over the open network. */
export const DEFAULT_ADMIN_HOST = '127.0.0.1';
/** Any free port by default, so that several kernels on one machine never collide; `kernel dashboard` says which. */
export const DEFAULT_ADMIN_PORT = 0;

/** `admin` as written in the config, checked: an IP address or 'localhost', and a port. */
export function normalizeAdmin(admin: false | { host?: unknown; port?: unknown }, file: string): AdminConfig {
  if (admin === false) return false;
  const host = admin.host ?? DEFAULT_ADMIN_HOST;
  if (typeof host !== 'string' || (host !== 'localhost' && isIP(host) === 0)) {
    throw theseusError('E_ADMIN_ADDRESS_INVALID', file, `host ${JSON.stringify(host)}`, 'is not an IP address or localhost');
  }
  const port = admin.port ?? DEFAULT_ADMIN_PORT;
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw theseusError('E_ADMIN_ADDRESS_INVALID', file, `port ${JSON.stringify(port)}`, 'is not a whole number from 0 to 65535');
  }
  return { host, port };
}

/** Where the kernel listens for a release's manifest `admin`: null when turned off. */
export function adminAddress(admin: AdminConfig | undefined): { host: string; port: number } | null {
  if (admin === false) return null;
  return admin ?? { host: DEFAULT_ADMIN_HOST, port: DEFAULT_ADMIN_PORT };
}
