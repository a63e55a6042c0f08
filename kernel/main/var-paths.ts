// The kernel's own files under a deploy root's var/ (git-ignored in the repo). The folder is
// owner-only, so the socket and cookie inside it are reachable by their owner alone.

import { chmod, mkdir } from 'node:fs/promises';
import { join } from 'node:path';

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
