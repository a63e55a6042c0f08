// Helpers for the release tests: building the example's releases into a temporary folder, and
// writing hostile archives byte by byte (no tool would make them willingly).

import { createHash, randomBytes } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { basename, join, relative } from 'node:path';
import { after } from 'node:test';
import { gzipSync } from 'node:zlib';
import { Header } from 'tar';

type EntryTypeName = 'File' | 'Directory' | 'SymbolicLink' | 'Link' | 'CharacterDevice' | 'BlockDevice' | 'FIFO';
import { buildRelease, type BuildResult } from '../../kernel/release/build.ts';
import { isAlive } from '../../kernel/common/deploy-paths.ts';
import { root } from '../helpers.ts';

import { tempDir } from '../temp-dirs.ts';

export { tempDir };
import { padding, tarHeader } from './raw-tar.ts';

export { paxData, rawTar, tarHeader, type RawHeader } from './raw-tar.ts';

export const exampleVersions = ['0.1.0', '0.2.0', '0.3.0'] as const;

export function exampleConfig(version: string): string {
  return join(root, 'services', 'sequence', version, 'theseus.config.ts');
}


/** Builds the example's three releases, in order, into a fresh folder. */
export async function buildExamples(outDir?: string): Promise<{ outDir: string; results: BuildResult[] }> {
  const dir = outDir ?? (await tempDir('theseus-releases-'));
  const results: BuildResult[] = [];
  for (const version of exampleVersions) results.push(await buildRelease({ configFile: exampleConfig(version), outDir: dir }));
  return { outDir: dir, results };
}

/**
 * The example's three releases as `buildExamples()` makes them, built once per run of the suite
 * and shared by the test files that only read them (unpack, copy, install or upgrade from them):
 * about 2 s of building saved in each. Tests of the build itself call `buildExamples()`.
 *
 * The build lives in `<tmp>/theseus-ex-<uid>/<runner pid>-<sources hash>`: one run of
 * `node --test` (each test file is a child of the runner), built from these very sources (kernel/,
 * services/sequence/, the package and lock files, this Node). Folders of runners that are gone are
 * removed here. A test file that writes into the shared build fails (its `after` hook finds the
 * bytes changed), so one file cannot quietly hand the next a different release.
 */
export function sharedExamples(): Promise<{ outDir: string; results: BuildResult[] }> {
  // Under StrykerJS the build itself may run a mutant (chosen by this variable): build afresh.
  if (process.env.__STRYKER_ACTIVE_MUTANT__ !== undefined) return buildExamples();
  sharedBuild ??= loadOrBuildShared();
  return sharedBuild;
}

let sharedBuild: Promise<{ outDir: string; results: BuildResult[] }> | undefined;

interface SharedRecord {
  results: BuildResult[];
  /** sha256 of every file of the build, by its path inside the folder. */
  files: Record<string, string>;
}

async function loadOrBuildShared(): Promise<{ outDir: string; results: BuildResult[] }> {
  // Short paths: `kernel downgrade <tarball>` sends the path in a field of at most 64 characters.
  const cacheRoot = join(tmpdir(), `theseus-ex-${userInfo().uid}`);
  await mkdir(cacheRoot, { recursive: true });
  await removeFoldersOfGoneRunners(cacheRoot);
  const outDir = join(cacheRoot, `${process.ppid}-${await sourcesHash()}`);
  const recordFile = join(cacheRoot, `${basename(outDir)}.json`);
  let record = (await readFile(recordFile, 'utf8').then((text) => JSON.parse(text) as SharedRecord).catch(() => null));
  if (!record) {
    // Built aside, then renamed into place: a file that dies mid-build leaves no half a build.
    const staging = join(cacheRoot, `.staging-${process.pid}-${randomBytes(4).toString('hex')}`);
    const { results } = await buildExamples(staging);
    await rename(staging, outDir).catch(async (error: NodeJS.ErrnoException) => {
      // Another process of the same run got there first; its build is the same bytes.
      if (error.code !== 'ENOTEMPTY' && error.code !== 'EEXIST') throw error;
      await rm(staging, { recursive: true, force: true });
    });
    const moved = (path: string) => join(outDir, relative(staging, path));
    record = { results: results.map((result) => ({ ...result, dir: moved(result.dir), tarball: moved(result.tarball) })), files: await fileHashes(outDir) };
    await writeFile(`${recordFile}.${process.pid}`, JSON.stringify(record));
    await rename(`${recordFile}.${process.pid}`, recordFile);
  }
  await checkUnchanged(outDir, record.files, 'before this test file used it');
  after(() => checkUnchanged(outDir, record.files, 'by this test file: a test that changes a release must copy it, or build its own with buildExamples()'));
  return { outDir, results: record.results };
}

async function checkUnchanged(outDir: string, expected: Record<string, string>, when: string): Promise<void> {
  const actual = await fileHashes(outDir);
  const changed = [...new Set([...Object.keys(expected), ...Object.keys(actual)])].filter((file) => expected[file] !== actual[file]);
  if (changed.length > 0) throw new Error(`the shared example build in ${outDir} was changed ${when}: ${changed.join(', ')}`);
}

async function fileHashes(dir: string): Promise<Record<string, string>> {
  const hashes: Record<string, string> = {};
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    hashes[relative(dir, path)] = createHash('sha256').update(await readFile(path)).digest('hex');
  }
  return hashes;
}

/** What the example's build is made from: a change to any of it is a new build. */
async function sourcesHash(): Promise<string> {
  const hash = createHash('sha256').update(process.version);
  for (const top of ['kernel', join('services', 'sequence')]) {
    const entries = await readdir(join(root, top), { recursive: true, withFileTypes: true });
    const files = entries.filter((entry) => entry.isFile()).map((entry) => join(entry.parentPath, entry.name)).sort();
    for (const file of files) hash.update(relative(root, file)).update('\0').update(await readFile(file)).update('\0');
  }
  for (const file of ['package.json', 'package-lock.json']) hash.update(file).update('\0').update(await readFile(join(root, file)));
  return hash.digest('hex').slice(0, 8);
}

/** Removes the builds and half-builds of runs whose process has ended. */
async function removeFoldersOfGoneRunners(cacheRoot: string): Promise<void> {
  for (const name of await readdir(cacheRoot)) {
    const pid = Number(/^(?:\.staging-)?(\d+)-/.exec(name)?.[1]);
    if (!pid || isAlive(pid)) continue;
    await rm(join(cacheRoot, name), { recursive: true, force: true });
  }
}

export interface RawEntry {
  path: string;
  type?: EntryTypeName;
  data?: Buffer;
  /** Declared size, when it should differ from the data's. */
  size?: number;
  linkpath?: string;
}

/** A .tar.gz holding exactly these entries, headers written as given. */
export function rawTarball(entries: RawEntry[]): Buffer {
  const blocks: Buffer[] = [];
  for (const entry of entries) {
    const data = entry.data ?? Buffer.alloc(0);
    const header = new Header({
      path: entry.path,
      type: entry.type ?? 'File',
      size: entry.size ?? (entry.type === undefined || entry.type === 'File' ? data.length : 0),
      mode: 0o644,
      mtime: new Date(0),
      ...(entry.linkpath ? { linkpath: entry.linkpath } : {}),
    });
    const block = Buffer.alloc(512);
    header.encode(block, 0);
    blocks.push(block);
    if (data.length > 0) {
      blocks.push(data, Buffer.alloc((512 - (data.length % 512)) % 512));
    }
  }
  blocks.push(Buffer.alloc(1024));
  return gzipSync(Buffer.concat(blocks));
}

/**
 * A .tar.gz whose entries declare `size` bytes of zeros each, built cheaply: gzip allows a stream
 * of members, so one compressed 16 MiB of zeros is repeated. Level 1, as an attacker would choose
 * it: node-tar aborts above a 1000:1 ratio, and level 1 stays near 230:1 (2 GiB is ~9 MB).
 */
export function gzipBomb(entries: Array<{ path: string; typeflag: string; size: number }>): Buffer {
  const unit = 16 * 1024 * 1024;
  const zeros = gzipSync(Buffer.alloc(unit), { level: 1 });
  const members: Buffer[] = [];
  for (const entry of entries) {
    members.push(gzipSync(tarHeader(entry, entry.size)));
    for (let left = entry.size; left > 0; left -= unit) members.push(left >= unit ? zeros : gzipSync(Buffer.alloc(left + padding(left).length), { level: 1 }));
  }
  members.push(gzipSync(Buffer.alloc(1024)));
  return Buffer.concat(members);
}

const openWatchers = new Set<FSWatcher>();

/**
 * Records every name created, changed or removed directly in `dirs` from now until stop(): "a
 * refused install wrote nothing" then means nothing was ever written there, not only that
 * nothing was left after the installer cleaned up. stop() writes a marker into each folder and
 * waits for its event; inotify reports a folder's events in order, so every earlier one has
 * arrived by then (no waiting on a clock).
 */
export function watchWrites(dirs: string[]): { stop(): Promise<string[]> } {
  // A test that fails before stop() must not leave a watcher holding the process open.
  if (openWatchers.size === 0) after(() => openWatchers.forEach((watcher) => watcher.close()));
  const seen: string[] = [];
  const markers = new Map<string, () => void>();
  const watchers = dirs.map((dir) =>
    watch(dir, (event, name) => {
      const path = join(dir, String(name));
      const arrived = markers.get(path);
      if (arrived) arrived();
      else if (!path.includes('.theseus-watch-marker')) seen.push(`${event} ${path}`);
    }),
  );
  for (const watcher of watchers) openWatchers.add(watcher);
  return {
    async stop() {
      await Promise.all(
        dirs.map(async (dir, index) => {
          const marker = join(dir, `.theseus-watch-marker-${index}`);
          const arrived = new Promise<void>((resolve) => markers.set(marker, resolve));
          await writeFile(marker, '');
          await arrived;
          await rm(marker);
        }),
      );
      for (const watcher of watchers) {
        watcher.close();
        openWatchers.delete(watcher);
      }
      return seen;
    },
  };
}
