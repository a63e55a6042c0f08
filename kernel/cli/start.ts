// `kernel start`: makes sure the deploy root has a permanent release (building one in a repo that
// has none yet), starts the kernel as a detached daemon, and returns once it answers ping.
// Runs in the CLI's process.

import { spawn } from 'node:child_process';
import { open, readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import semver from 'semver';
import { TheseusError, theseusError } from '../common/errors.ts';

import { ensureVarDir, isAlive, varPaths } from '../common/deploy-paths.ts';
import { DEFAULT_CONFIG_FILE } from '../release/config.ts';
import { installRelease } from '../release/install.ts';
import { permanentVersion, readRegistry, withPermanent, writeRegistry } from '../release/registry.ts';
import { request } from './control-client.ts';

const READY_TIMEOUT_MS = 60_000;

/** Gives the root a permanent release if it has none: the newest built one, or a fresh build. */
async function ensurePermanentRelease(root: string, say: (line: string) => void): Promise<string[]> {
  if (permanentVersion(await readRegistry(root))) return [];
  const notes: string[] = [];
  const built = [];
  for (const name of await readdir(join(root, 'releases')).catch(() => [] as string[])) {
    if (semver.valid(name) && (await stat(join(root, 'releases', name, 'manifest.json')).catch(() => null))) built.push(name);
  }
  let version = built.sort(semver.rcompare)[0];
  if (!version) {
    const config = join(root, DEFAULT_CONFIG_FILE);
    if (!(await stat(config).catch(() => null))) throw theseusError('E_RELEASE_NOT_FOUND', 'permanent release', 'none; and no theseus.config.ts to build one from (run kernel init)');
    say(`No release yet in ${root}: building one from ${DEFAULT_CONFIG_FILE} first.`);
    const { buildRelease } = await import('../release/build.ts');
    version = (await buildRelease({ configFile: config, outDir: join(root, 'releases'), log: (line) => say(`  ${line}`) })).version;
  }
  await installRelease(root, join(root, 'releases', version));
  await writeRegistry(root, withPermanent(await readRegistry(root), version));
  notes.push(`Release ${version} was made permanent (the root had no permanent release).`);
  return notes;
}

export async function startDaemon(root: string, say: (line: string) => void): Promise<{ pid: number; release: string; notes: string[] }> {
  const paths = varPaths(root);
  // Refuse a second kernel clearly; a pid file whose process is gone is stale and cleaned by the daemon.
  const pidText = await readFile(paths.pid, 'utf8').catch(() => null);
  const pid = pidText === null ? NaN : Number.parseInt(pidText, 10);
  if (Number.isInteger(pid) && isAlive(pid)) throw theseusError('E_ALREADY_RUNNING', root, pid);
  const notes = await ensurePermanentRelease(root, say);
  if (pidText !== null) notes.unshift(`Removed a stale pid file left by a kernel that is gone (pid ${pidText.trim()}).`);

  await ensureVarDir(paths);
  const out = await open(paths.daemonOut, 'a', 0o600);
  // The same program, in the foreground, detached from this terminal: bin/kernel's lib/kernel.mjs
  // in a deployed root, kernel/index.js (through tsx) in the repo.
  const child = spawn(process.execPath, [...process.execArgv, process.argv[1]!, 'foreground', '--root', root], {
    detached: true,
    stdio: ['ignore', out.fd, out.fd],
    cwd: root,
    env: { ...process.env, THESEUS_ROOT: root },
  });
  child.unref();
  await out.close();
  let exited: number | null = null;
  child.once('exit', (code) => (exited = code ?? 1));

  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (exited !== null) {
      const tail = (await readFile(paths.daemonOut, 'utf8').catch(() => '')).trim().split('\n').slice(-5).join('\n  ');
      throw theseusError('E_KERNEL_START_FAILED', exited, paths.daemonOut, tail);
    }
    try {
      const pong = await request(root, 'ping', {}, { timeoutMs: 2000 });
      return { pid: pong.pid, release: pong.release, notes };
    } catch (error) {
      if (!(error instanceof TheseusError) || (error.code !== 'E_KERNEL_NOT_RUNNING' && error.code !== 'E_KERNEL_TIMEOUT')) throw error;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw theseusError('E_KERNEL_TIMEOUT', 'start', READY_TIMEOUT_MS);
}
