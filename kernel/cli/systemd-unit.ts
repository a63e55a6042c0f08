// `kernel systemd-unit`: prints a systemd service unit that runs a deploy root's kernel with
// `bin/kernel foreground`. Runs in the CLI's process; it writes nothing (the operator, or
// scripts/ansible's install.yml, puts the text in /etc/systemd/system/<name>.service).
//
// Why each setting:
// - Type=exec: `foreground` is the kernel's process itself; systemd tracks it directly.
// - KillMode=mixed: `systemctl stop` sends SIGTERM to the kernel alone, which drains (health says
//   "draining" for the stop grace, requests in flight are answered, services end cleanly). Hooks'
//   child processes are left to the kernel; only if TimeoutStopSec passes is everything SIGKILLed.
// - TimeoutStopSec: the stop grace plus the time a stop may take (the same 60 s `kernel stop`
//   waits), so systemd never kills a kernel that is still draining within its limits.
// - Restart=on-failure: a crashed kernel comes back (its state from its checkpoints); a clean stop,
//   `bin/kernel stop` included, exits 0 and stays stopped.
// - No ExecReload: Theseus has no configuration to reload in place. Configuration ships in
//   releases, and `bin/kernel upgrade` swaps a config-only release in without a restart.

import { access, readFile, constants } from 'node:fs/promises';
import { join } from 'node:path';
import { userInfo } from 'node:os';
import { theseusError } from '../common/errors.ts';
import { readStopGraceMs, STOP_GRACE_ENV } from '../main/health.ts';
import { permanentVersion, readRegistry } from '../release/registry.ts';

/** How long a stop may take once the grace is over: what `kernel stop` waits for too. */
const STOP_TIMEOUT_S = 60;

export interface UnitOptions {
  root: string;
  user?: string;
  group?: string;
  /** Health answers "draining" this long before the listeners close (THESEUS_STOP_GRACE_MS). */
  stopGraceMs?: number;
  /** The Node.js binary (THESEUS_NODE); by default the release's bundled one, else this CLI's. */
  node?: string;
}

/**
 * A path written into the unit as it is. systemd reads quotes, `%` specifiers, `$` variables and
 * spaces differently from one setting to the next (WorkingDirectory= takes none of them), so a
 * path holding any of those is refused rather than escaped three ways.
 */
export function plainPath(option: string, path: string): string {
  if (!/^\/[A-Za-z0-9/._+@:,-]*$/.test(path)) {
    throw theseusError('E_SYSTEMD_UNIT_VALUE', option, path, 'a unit takes an absolute path of letters, digits and / . _ + @ : , - only (no spaces, quotes, % or $)');
  }
  return path;
}

/** User and group names as useradd takes them; anything else is refused rather than quoted. */
function checkName(option: string, name: string): string {
  if (!/^[a-z_][a-z0-9_-]*\$?$/i.test(name) || name.length > 32) throw theseusError('E_SYSTEMD_UNIT_VALUE', option, name, 'it is not a user or group name (letters, digits, _ and -, at most 32)');
  return name;
}

export async function systemdUnit(options: UnitOptions): Promise<string> {
  const { root } = options;
  const kernel = join(root, 'bin', 'kernel');
  await access(kernel, constants.X_OK).catch(() => {
    throw theseusError('E_NOT_A_DEPLOY_ROOT', root, 'bin/kernel');
  });
  // The app's name, for the description: from the release that boots.
  const permanent = permanentVersion(await readRegistry(root));
  const manifest = permanent ? ((await readFile(join(root, 'releases', permanent, 'manifest.json'), 'utf8').then(JSON.parse, () => null)) as { app?: string } | null) : null;
  // Printable characters only: the description is one line of the unit.
  const app = typeof manifest?.app === 'string' ? manifest.app.replace(/[^\x20-\x7e]/g, '?') : 'theseus';
  const bundledNode = join(root, 'node', 'bin', 'node');
  const node = options.node ?? ((await access(bundledNode, constants.X_OK).then(() => true, () => false)) ? bundledNode : process.execPath);
  const user = checkName('--user', options.user ?? userInfo().username);
  const group = options.group === undefined ? null : checkName('--group', options.group);
  // The kernel would refuse to start on a grace it cannot use: refuse to write it too.
  const graceMs = readStopGraceMs({ [STOP_GRACE_ENV]: String(options.stopGraceMs ?? 0) });
  plainPath('--root', root);
  plainPath('--node', node);
  const env = (name: string, value: string) => `Environment=${name}=${value}`;
  const lines = [
    '# Written by `kernel systemd-unit`. Install as /etc/systemd/system/<name>.service, then:',
    '#   systemctl daemon-reload && systemctl enable --now <name>',
    '[Unit]',
    `Description=Theseus kernel: ${app.replaceAll('%', '%%')} (${root})`,
    'Wants=network-online.target',
    'After=network-online.target',
    '',
    '[Service]',
    'Type=exec',
    `User=${user}`,
    ...(group ? [`Group=${group}`] : []),
    `WorkingDirectory=${root}`,
    env('THESEUS_ROOT', root),
    env('THESEUS_NODE', node),
    env(STOP_GRACE_ENV, String(graceMs)),
    `ExecStart=${kernel} foreground`,
    '# SIGTERM to the kernel alone: it drains (health says "draining" for the grace), answers what',
    '# is in flight and ends its services cleanly. SIGKILL only past TimeoutStopSec.',
    'KillMode=mixed',
    'KillSignal=SIGTERM',
    `TimeoutStopSec=${Math.ceil(graceMs / 1000) + STOP_TIMEOUT_S}`,
    '# A crash restarts the kernel from its checkpoints; a clean stop (exit 0) stays stopped.',
    'Restart=on-failure',
    'RestartSec=2',
    '# No ExecReload: configuration ships in releases; `bin/kernel upgrade` swaps one in, hot.',
    '# Each HTTP listener takes up to 4096 connections.',
    'LimitNOFILE=65536',
    'NoNewPrivileges=yes',
    'PrivateTmp=yes',
    'ProtectSystem=full',
    '',
    '[Install]',
    'WantedBy=multi-user.target',
    '',
  ];
  return lines.join('\n');
}
