// `kernel start`: makes sure the deploy root has a permanent release (building one in a project
// that has none yet, and the example's releases in the Theseus repo), starts the kernel as a
// detached daemon, and returns once it answers ping. Runs in the CLI's process.

import { spawn } from 'node:child_process';
import { open, readdir, readFile, stat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import semver from 'semver';
import { TheseusError, theseusError } from '../common/errors.ts';

import { DEFAULT_CONFIG_FILE, ensureVarDir, isAlive, varPaths } from '../common/deploy-paths.ts';
import { installRelease } from '../release/install.ts';
import { permanentVersion, readRegistry, withPermanent, writeRegistry } from '../release/registry.ts';
import { request } from './control-client.ts';
import { describeConfigs, versionedConfigs } from './project.ts';

const READY_TIMEOUT_MS = 60_000;

/** A path as typed from the current folder: ./releases/0.2.0 in the root, absolute elsewhere. */
function typedPath(path: string): string {
  const fromHere = relative(process.cwd(), path);
  return fromHere && !fromHere.startsWith('..') ? `./${fromHere}` : path;
}

/** The releases built into root/releases/ (with a manifest), oldest first. */
async function builtReleases(root: string): Promise<string[]> {
  const built: string[] = [];
  for (const name of await readdir(join(root, 'releases')).catch(() => [] as string[])) {
    if (semver.valid(name) === name && (await stat(join(root, 'releases', name, 'manifest.json')).catch(() => null))) built.push(name);
  }
  return built.sort(semver.compare);
}

/** Why there is nothing to start, and what to do about it. */
async function nothingToStart(root: string): Promise<TheseusError> {
  const services = (await readdir(join(root, 'services')).catch(() => [] as string[])).length > 0;
  return theseusError(
    'E_NO_RELEASE_TO_START',
    root,
    `releases/ holds no built release, and there is no ${DEFAULT_CONFIG_FILE} to build one from`,
    services
      ? `Write ${DEFAULT_CONFIG_FILE} with 'kernel init' (it lists the services it finds under services/), then run 'kernel start' again: it builds the release first.`
      : `Run 'kernel start' in your project's folder (the one with ${DEFAULT_CONFIG_FILE}), or in a deploy root unpacked from a release tarball, or give that folder with --root.`,
  );
}

/**
 * Gives the root a permanent release if it has none, and says what it did. A project's newest
 * built release, or a fresh build of its theseus.config.ts; in a project with one configuration per
 * version (the repo's example), every version built (when none is yet) and the oldest made
 * permanent, so the story starts at its beginning.
 */
async function ensurePermanentRelease(root: string, say: (line: string) => void): Promise<string[]> {
  if (permanentVersion(await readRegistry(root))) return [];
  const example = await versionedConfigs(root);
  let built = await builtReleases(root);
  if (built.length === 0) {
    const { buildRelease } = await import('../release/build.ts');
    const log = (line: string) => say(`  ${line}`);
    const outDir = join(root, 'releases');
    if (example.length > 0) {
      say(`No release built yet in ${root}: building the example's releases ${example.map((e) => e.version).join(', ')} (${describeConfigs(root, example)}) into releases/ first.`);
      for (const { config } of example) await buildRelease({ configFile: config, outDir, log });
    } else if (await stat(join(root, DEFAULT_CONFIG_FILE)).catch(() => null)) {
      say(`No release built yet in ${root}: building one from ${DEFAULT_CONFIG_FILE} first.`);
      await buildRelease({ configFile: join(root, DEFAULT_CONFIG_FILE), outDir, log });
    } else {
      throw await nothingToStart(root);
    }
    built = await builtReleases(root);
  }
  const version = example.length > 0 ? built[0]! : built.at(-1)!;
  await installRelease(root, join(root, 'releases', version));
  await writeRegistry(root, withPermanent(await readRegistry(root), version));
  if (example.length > 0) {
    const next = built.find((v) => semver.gt(v, version));
    return [`Release ${version}, the first of the example's releases, was made permanent.${next ? ` Next: 'kernel upgrade ${typedPath(join(root, 'releases', next))}'.` : ''}`];
  }
  return [`Release ${version} was made permanent (the root had no permanent release).`];
}

/** The note `start` prints when the kernel it starts reverts a release that was on trial. */
async function trialNote(root: string): Promise<string | null> {
  const registry = await readRegistry(root);
  const trial = registry.releases.find((entry) => entry.status === 'current')?.version;
  const permanent = permanentVersion(registry);
  if (!trial || !permanent) return null;
  const verb = semver.gt(trial, permanent) ? 'upgrade' : 'downgrade';
  return `Release ${trial} was on trial (never committed), so the kernel went back to the permanent release ${permanent}. 'kernel ${verb} ${trial}' runs it again; 'kernel commit' after that makes it permanent.`;
}

export async function startDaemon(root: string, say: (line: string) => void): Promise<{ pid: number; release: string; notes: string[] }> {
  const paths = varPaths(root);
  // Refuse a second kernel clearly; a pid file whose process is gone is stale and cleaned by the daemon.
  const pidText = await readFile(paths.pid, 'utf8').catch(() => null);
  const pid = pidText === null ? NaN : Number.parseInt(pidText, 10);
  if (Number.isInteger(pid) && isAlive(pid)) throw theseusError('E_ALREADY_RUNNING', root, pid);
  const notes = await ensurePermanentRelease(root, say);
  if (pidText !== null) notes.unshift(`Removed a stale pid file left by a kernel that is gone (pid ${pidText.trim()}).`);
  // The daemon reverts a trial release as it boots (deploy-root.ts): said here, where the user looks.
  const reverted = await trialNote(root);
  if (reverted) notes.push(reverted);

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
      // Not answering yet is what a kernel that is still booting does.
      if (!(error instanceof TheseusError) || !['E_KERNEL_NOT_RUNNING', 'E_KERNEL_NOT_ANSWERING', 'E_KERNEL_TIMEOUT'].includes(error.code)) throw error;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw theseusError('E_KERNEL_TIMEOUT', 'start', READY_TIMEOUT_MS);
}
