// Where a deploy root and the kernel's own files are, and whether the kernel that wrote its pid
// there is alive: what the CLI's cheap verbs need, without loading any of the kernel. Runs in the
// CLI's process and the kernel's main thread.
//
// The kernel's files live under the root's var/ (git-ignored in the repo). The folder is
// owner-only, so the socket and cookie inside it are reachable by their owner alone.

import { readFileSync } from 'node:fs';
import { chmod, mkdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';

/** The release configuration `kernel init` writes and `kernel build` reads, in the project folder. */
export const DEFAULT_CONFIG_FILE = 'theseus.config.ts';

/** The deploy root: --root, else $THESEUS_ROOT, else the current folder. */
export function resolveDeployRoot(flag: string | undefined): string {
  return resolve(flag ?? process.env.THESEUS_ROOT ?? process.cwd());
}

/**
 * Whether a process with this pid runs (one owned by another user counts). A process that has
 * exited but that its parent has not reaped yet (a zombie, as a SIGKILLed daemon is for a moment)
 * holds its pid but runs nothing: it counts as gone, so `start` and `status` agree about it.
 */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
  return !hasExited(pid);
}

/** Linux's view: the state letter after the command name in /proc/<pid>/stat (Z zombie, X dead). */
function hasExited(pid: number): boolean {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return false; // no /proc here: kill(pid, 0) is all there is to go by
  }
  const state = stat.charAt(stat.lastIndexOf(')') + 2);
  return state === 'Z' || state === 'X';
}

/** The pid in the root's pid file when that process runs; null when there is none or it is gone. */
export async function runningPid(root: string): Promise<number | null> {
  const text = await readFile(varPaths(root).pid, 'utf8').catch(() => null);
  const pid = text === null ? NaN : Number.parseInt(text, 10);
  return Number.isInteger(pid) && pid > 0 && isAlive(pid) ? pid : null;
}

export interface VarPaths {
  dir: string;
  socket: string;
  cookie: string;
  pid: string;
  logDir: string;
  log: string;
  daemonOut: string;
  audit: string;
  cache: string;
  /** The admin listener's token (like the cookie, owner-only) and where it listens, as JSON. */
  adminToken: string;
  admin: string;
}

export function varPaths(root: string): VarPaths {
  const dir = join(root, 'var');
  return {
    dir,
    socket: join(dir, 'kernel.sock'),
    cookie: join(dir, 'cookie'),
    pid: join(dir, 'kernel.pid'),
    logDir: join(dir, 'log'),
    log: join(dir, 'log', 'kernel.log'),
    daemonOut: join(dir, 'log', 'daemon.out'),
    audit: join(dir, 'audit.jsonl'),
    cache: join(dir, 'cache'),
    adminToken: join(dir, 'admin-token'),
    admin: join(dir, 'admin.json'),
  };
}

export async function ensureVarDir(paths: VarPaths): Promise<void> {
  await mkdir(paths.logDir, { recursive: true, mode: 0o700 });
  await chmod(paths.dir, 0o700);
}
