// Where a deploy root and the kernel's own files are, and whether the kernel that wrote its pid
// there is alive: what the CLI's cheap verbs need, without loading any of the kernel. Runs in the
// CLI's process and the kernel's main thread.
//
// The kernel's files live under the root's var/ (git-ignored in the repo). The folder is
// owner-only, so the socket and cookie inside it are reachable by their owner alone.

import { chmod, mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';

/** The release configuration `kernel init` writes and `kernel build` reads, in the project folder. */
export const DEFAULT_CONFIG_FILE = 'theseus.config.ts';

/** The deploy root: --root, else $THESEUS_ROOT, else the current folder. */
export function resolveDeployRoot(flag: string | undefined): string {
  return resolve(flag ?? process.env.THESEUS_ROOT ?? process.cwd());
}

/** Whether a process with this pid exists (one owned by another user counts). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
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
  };
}

export async function ensureVarDir(paths: VarPaths): Promise<void> {
  await mkdir(paths.logDir, { recursive: true, mode: 0o700 });
  await chmod(paths.dir, 0o700);
}
