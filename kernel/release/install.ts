// Installing a release into a deploy root: from a release folder, a tarball, or a version already
// there. Used by the kernel's main thread (upgrade) and the CLI. Everything is staged in a fresh
// folder under `releases/` and verified against the manifest's hashes before one rename makes it
// visible, so a failure never leaves a half-installed release behind. An archive is scanned before
// the staging folder exists, and scanned and extracted in a worker thread (unpack.ts).
//
// Every path comes from the manifest, checked there (manifest.ts, release-paths.ts), and is
// checked again here against the folder it must stay in, once lexically and once with symbolic
// links resolved. Every lookup of a manifest key is an own-key lookup.

import { constants } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { copyFile, mkdir, open, readdir, readFile, rename, rm, rmdir, stat } from 'node:fs/promises';
import { basename, join, relative, sep } from 'node:path';
import semver from 'semver';
import { TheseusError, errorMessage, theseusError } from '../common/errors.ts';
import { hangIfFaulted } from '../common/faults.ts';
import { sha256 } from './fs-atomic.ts';
import { parseManifest, parsePlan, type Manifest, type Plan } from './manifest.ts';
import { assertRealpathInside, pathInside } from './release-paths.ts';
import { SIGNATURE_FILE, checkSignature } from './signing.ts';
import { findEntry, readRegistry, withUnpacked, withoutRelease, writeRegistry } from './registry.ts';
import { DEFAULT_TAR_LIMITS, sniffArchive, type ArchiveFormat, type TarEntry, type TarLimits } from './tarball.ts';
import { unpackArchive } from './unpack.ts';

export interface InstalledRelease {
  version: string;
  dir: string;
  manifest: Manifest;
  plan: Plan | null;
  manifestSha256: string;
  /** True when the same version with the same contents was already installed. */
  alreadyInstalled: boolean;
  /**
   * True when this install added the version's registry row, even for a folder that was already
   * in place (a release built into the deploy root's own releases/): a refused request takes
   * the row away again, so it leaves the registry as it found it.
   */
  registeredHere: boolean;
}

/** Staging folders are named `.staging-<pid>-<random>`: the pid tells a dead installer's from a live one's. */
const STAGING_PREFIX = '.staging-';
/** A manifest lists files and services; thousands of them fit in far less. */
const MAX_MANIFEST_BYTES = 16 * 1024 * 1024;
/** A release archive by its name, for a folder that holds one (the seed's way of deploying). */
const ARCHIVE_NAME = /\.(?:tar\.gz|tgz|tar)$/;

/**
 * Files a release folder may hold besides those its manifest lists: the manifest, its signature,
 * and (in a built or installed release, not inside an archive) the release's own tarball.
 */
function isReleaseMetadata(path: string, allowTarballs: boolean): boolean {
  return path === 'manifest.json' || path === SIGNATURE_FILE || (allowTarballs && !path.includes('/') && ARCHIVE_NAME.test(path));
}

async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  const files: string[] = [];
  for (const entry of entries) {
    const path = relative(dir, join(entry.parentPath ?? (entry as unknown as { path: string }).path, entry.name)).split(sep).join('/');
    if (entry.isSymbolicLink()) throw theseusError('E_TAR_SYMLINK', dir, path);
    if (entry.isFile()) files.push(path);
    else if (!entry.isDirectory()) throw theseusError('E_TAR_DEVICE', dir, path, 'special file');
  }
  return files.sort();
}

/**
 * The sha256 and size of a file, read in chunks (a large file is hashed without holding the main
 * thread), never through a symbolic link as its last component; null when it does not exist.
 */
async function hashFile(file: string): Promise<{ sha256: string; size: number } | null> {
  const handle = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return null;
    throw error;
  });
  if (handle === null) return null;
  try {
    const hash = createHash('sha256');
    let size = 0;
    for await (const chunk of handle.createReadStream({ autoClose: false })) {
      hash.update(chunk as Buffer);
      size += (chunk as Buffer).length;
    }
    return { sha256: hash.digest('hex'), size };
  } finally {
    await handle.close();
  }
}

export interface VerifyOptions {
  /** Whether a `*.tar.gz` beside the manifest is tolerated unlisted (false inside an archive). */
  allowTarballs?: boolean;
}

/** Reads and checks a release folder: schema, every listed file's size and hash, no extra files. */
export async function verifyReleaseDir(
  dir: string,
  trustRoot?: string,
  { allowTarballs = true }: VerifyOptions = {},
): Promise<{ manifest: Manifest; plan: Plan | null; manifestSha256: string }> {
  const manifestFile = join(dir, 'manifest.json');
  const manifestSize = (await stat(manifestFile).catch(() => null))?.size;
  // Parsed in one piece on the calling thread: a huge manifest would hold the kernel up.
  if (manifestSize !== undefined && manifestSize > MAX_MANIFEST_BYTES) {
    throw theseusError('E_MANIFEST_INVALID', manifestFile, 'release manifest', `it is ${manifestSize} bytes, over the limit of ${MAX_MANIFEST_BYTES}`);
  }
  const manifestText = await readFile(manifestFile, 'utf8').catch(() => null);
  if (manifestText === null) throw theseusError('E_RELEASE_MISSING_FILE', manifestFile);
  const manifest = parseManifest(manifestText, manifestFile);
  // With trusted keys in the deploy root, nothing unsigned gets further than this.
  if (trustRoot !== undefined) await checkSignature(trustRoot, dir, manifestText);
  for (const file of await listFiles(dir)) {
    // An own key only: `constructor` is not listed because every object has one.
    if (!isReleaseMetadata(file, allowTarballs) && !Object.hasOwn(manifest.files, file)) throw theseusError('E_RELEASE_EXTRA_FILE', join(dir, file));
  }
  for (const [file, expected] of Object.entries(manifest.files)) {
    const full = pathInside(dir, file);
    if (!(await stat(full).catch(() => null))) throw theseusError('E_RELEASE_MISSING_FILE', full);
    await assertRealpathInside(dir, file, full);
    const actual = await hashFile(full);
    if (actual === null) throw theseusError('E_RELEASE_MISSING_FILE', full);
    if (actual.sha256 !== expected.sha256 || actual.size !== expected.size) {
      throw theseusError('E_RELEASE_HASH_MISMATCH', full, expected.sha256, actual.sha256);
    }
  }
  let plan: Plan | null = null;
  if (Object.hasOwn(manifest.files, 'plan.json')) {
    const planFile = join(dir, 'plan.json');
    plan = parsePlan(await readFile(planFile, 'utf8'), planFile);
  }
  return { manifest, plan, manifestSha256: sha256(manifestText) };
}

export interface InstallOptions {
  limits?: TarLimits;
  /** Told how long unpacking and verifying took, as they finish. */
  onStep?: (step: 'unpack' | 'verify', ms: number) => void;
}

/** A version that a source's name promises, and where the promise is made. */
interface NamedVersion {
  version: string;
  by: string;
}

type ResolvedSource = { kind: 'folder'; path: string; named: NamedVersion[] } | { kind: 'tarball'; path: string; format: ArchiveFormat; named: NamedVersion[] };

/**
 * Installs `source` into `root/releases/<version>/` and records it in the registry as unpacked.
 * `source` is a release folder, a .tar.gz (or plain .tar), or the version of a release already
 * under `root` (unpacked, or with its tarball copied into `releases/<version>/`, as the seed
 * deploys).
 */
export async function installRelease(root: string, source: string, options: InstallOptions = {}): Promise<InstalledRelease> {
  const releasesDir = join(root, 'releases');
  await mkdir(releasesDir, { recursive: true });
  const resolved = await resolveSource(root, source);
  let mark = performance.now();
  const step = (name: 'unpack' | 'verify') => {
    const now = performance.now();
    options.onStep?.(name, Math.round((now - mark) * 10) / 10);
    mark = now;
  };
  const staging = join(releasesDir, `${STAGING_PREFIX}${process.pid}-${randomBytes(6).toString('hex')}`);
  try {
    return await stageAndInstall();
  } catch (error) {
    if (error instanceof TheseusError) throw error;
    // A full disk or a failing device: a clear error, and the staging folder goes below.
    throw theseusError('E_INSTALL_FAILED', source, errorMessage(error));
  } finally {
    await rm(staging, { recursive: true, force: true });
  }

  async function stageAndInstall(): Promise<InstalledRelease> {
    let candidate = resolved.path;
    const named = [...resolved.named];
    if (resolved.kind === 'tarball') {
      // The archive is scanned in the worker before `staging` exists; it is created only to
      // extract an archive the scan accepted, and one whose name lies is refused before that.
      const folder = await unpackArchive({ archive: resolved.path, format: resolved.format, limits: options.limits ?? DEFAULT_TAR_LIMITS }, staging, (entries) => {
        const found = releaseFolderOf(resolved.path, entries);
        assertNamedVersion(named, found.slice('releases/'.length));
        return found;
      });
      named.push({ version: folder.slice('releases/'.length), by: `${resolved.path} (its folder ${folder}/)` });
      candidate = join(staging, folder);
      // Test-only (THESEUS_FAULTS=hang-after:unpack): held here, a SIGKILL leaves a full staging folder.
      await hangIfFaulted('unpack', () => undefined);
    }
    step('unpack');
    const { manifest, plan, manifestSha256 } = await verifyReleaseDir(candidate, root, { allowTarballs: resolved.kind === 'folder' });
    step('verify');
    assertNamedVersion(named, manifest.version);
    const target = join(releasesDir, manifest.version);
    const existing = await stat(join(target, 'manifest.json')).catch(() => null);
    if (existing) {
      const installed = await verifyReleaseDir(target, root);
      if (installed.manifestSha256 !== manifestSha256) throw theseusError('E_RELEASE_CONFLICT', manifest.version, releasesDir);
      const registeredHere = await recordUnpacked(root, manifest.version, manifestSha256);
      return { version: manifest.version, dir: target, manifest, plan, manifestSha256, alreadyInstalled: true, registeredHere };
    }
    if (resolved.kind === 'folder') {
      // Copy only what the manifest lists, then verify the copy: the source may change meanwhile.
      // Each copy is a new regular file in our own staging folder (never through a link, never
      // over an existing file), at a path checked to stay inside it.
      await mkdir(staging, { mode: 0o755 });
      const signed = await stat(join(candidate, SIGNATURE_FILE)).catch(() => null);
      for (const file of ['manifest.json', ...(signed ? [SIGNATURE_FILE] : []), ...Object.keys(manifest.files)]) {
        const from = pathInside(candidate, file);
        const to = pathInside(staging, file);
        await assertRealpathInside(candidate, file, from);
        await mkdir(join(to, '..'), { recursive: true });
        await copyFile(from, to, constants.COPYFILE_EXCL);
      }
      candidate = staging;
      await verifyReleaseDir(candidate, root, { allowTarballs: false });
    }
    if (await stat(target).catch(() => null)) {
      // releases/<version>/ holding only the tarball it came from (the seed's way of deploying):
      // keep the tarball with the release, then put the verified release in its place.
      for (const name of await readdir(target)) {
        if (!ARCHIVE_NAME.test(name)) throw theseusError('E_RELEASE_CONFLICT', manifest.version, `${target} (it holds ${name} but no manifest)`);
        await rename(join(target, name), join(candidate, name));
      }
      await rmdir(target);
    }
    await rename(candidate, target);
    const registeredHere = await recordUnpacked(root, manifest.version, manifestSha256);
    return { version: manifest.version, dir: target, manifest, plan, manifestSha256, alreadyInstalled: false, registeredHere };
  }
}

/** The one `releases/<version>` folder of a scanned archive, where its manifest is. */
function releaseFolderOf(archive: string, entries: readonly TarEntry[]): string {
  const manifests = entries.filter((entry) => entry.type === 'File' && /^releases\/[^/]+\/manifest\.json$/.test(entry.path));
  if (manifests.length !== 1) {
    throw theseusError('E_MANIFEST_INVALID', archive, 'release archive', `it holds ${manifests.length} release manifests (expected exactly one under releases/<version>/)`);
  }
  return manifests[0]!.path.replace(/\/manifest\.json$/, '');
}

/** Refuses a release whose version is not the one its file name, folder or request promised. */
function assertNamedVersion(named: readonly NamedVersion[], version: string): void {
  const broken = named.find((promise) => promise.version !== version);
  if (broken) throw theseusError('E_RELEASE_VERSION_MISMATCH', broken.by, broken.version, version);
}

/** The version in a release file's name, as `kernel release` names it (<app>-<version>.tar.gz), if any. */
function versionInName(name: string): string | null {
  const match = /(?:^|[-_])v?(\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?)$/.exec(name.replace(ARCHIVE_NAME, ''));
  return match && semver.valid(match[1]!) === match[1] ? match[1]! : null;
}

/** Adds the release to the registry as unpacked; writes nothing when it is already there. */
/** Records `version` as unpacked; true when its row is new. */
async function recordUnpacked(root: string, version: string, manifestSha256: string): Promise<boolean> {
  const registry = await readRegistry(root);
  const isNew = findEntry(registry, version) === undefined;
  const next = withUnpacked(registry, version, manifestSha256);
  if (next !== registry) await writeRegistry(root, next);
  return isNew;
}

/**
 * Takes away the registry row a refused request added for a release folder that was already in
 * place: the folder stays, as the request found it. A row whose release has since run, or is no
 * longer merely unpacked, stays.
 */
export async function forgetRegistration(root: string, version: string): Promise<void> {
  const registry = await readRegistry(root);
  if (findEntry(registry, version)?.status !== 'unpacked') return;
  await writeRegistry(root, withoutRelease(registry, version));
}

async function resolveSource(root: string, source: string, named: NamedVersion[] = []): Promise<ResolvedSource> {
  const info = await stat(source).catch(() => null);
  if (info?.isDirectory()) {
    // releases/<version>/ by convention: a folder named for a version must hold that version.
    const folderName = basename(source);
    const promises = semver.valid(folderName) === folderName ? [...named, { version: folderName, by: source }] : named;
    if (await stat(join(source, 'manifest.json')).catch(() => null)) return { kind: 'folder', path: source, named: promises };
    // A folder holding only the release's tarball (the seed copies it into releases/<version>/).
    const tarballs = (await readdir(source)).filter((name) => ARCHIVE_NAME.test(name));
    if (tarballs.length === 1) return resolveSource(root, join(source, tarballs[0]!), promises);
    throw theseusError('E_RELEASE_NOT_A_RELEASE', source, `a folder with no manifest.json, holding ${tarballs.length === 0 ? 'no' : tarballs.length} release archives (expected one)`);
  }
  if (info?.isFile()) {
    // Read by its first bytes, never by its name: a plain tar named .tar.gz is a tar.
    const sniffed = await sniffArchive(source);
    if ('other' in sniffed) throw theseusError('E_RELEASE_NOT_A_RELEASE', source, sniffed.other);
    const version = versionInName(basename(source));
    return { kind: 'tarball', path: source, format: sniffed.format, named: version === null ? named : [...named, { version, by: source }] };
  }
  if (info === null && named.length === 0 && semver.valid(source) === source) {
    const installed = join(root, 'releases', source);
    if (await stat(installed).catch(() => null)) return resolveSource(root, installed, [{ version: source, by: `the requested version ${source}` }]);
  }
  if (info !== null) throw theseusError('E_RELEASE_NOT_A_RELEASE', source, 'it is neither a folder nor a regular file');
  const known = (await readdir(join(root, 'releases')).catch(() => [] as string[])).filter((name) => semver.valid(name)).sort(semver.compare);
  // A bare version asks for an installed release; anything else was meant as a path.
  if (semver.valid(source) === source) {
    throw theseusError('E_RELEASE_NOT_INSTALLED', source, known.join(', '), "To install it on the way, give its release folder or tarball instead of its version (kernel release builds them); 'kernel releases' lists what is installed.");
  }
  throw theseusError('E_RELEASE_NOT_FOUND', source, known.join(', '));
}

/** Whether a process with this pid is alive (EPERM: alive, but another user's). */
function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes the staging folders that interrupted installs left in `root/releases/` (a SIGKILL
 * mid-unpack leaves one; dot-named, neither `ls` nor `kernel releases` shows it), and tells `log`
 * what it removed. Call it at boot, before this process installs anything: a folder whose pid is
 * this process's is then a previous process's with a recycled pid.
 */
export async function removeStaleStaging(root: string, log: (message: string) => void): Promise<string[]> {
  const releasesDir = join(root, 'releases');
  const names = (await readdir(releasesDir).catch(() => [] as string[])).filter((name) => name.startsWith(STAGING_PREFIX));
  const removed: string[] = [];
  for (const name of names) {
    const pid = Number(/^\.staging-(\d+)-/.exec(name)?.[1] ?? NaN);
    // A live installer's folder stays (another process installing into this root right now).
    if (Number.isInteger(pid) && pid !== process.pid && processAlive(pid)) continue;
    await rm(join(releasesDir, name), { recursive: true, force: true });
    removed.push(name);
  }
  if (removed.length > 0) log(`removed ${removed.length} staging folder${removed.length === 1 ? '' : 's'} left by an interrupted install: ${removed.map((name) => join(releasesDir, name)).join(', ')}`);
  return removed;
}

/**
 * Undoes an install that a failed upgrade made, when its code never ran: `version` leaves the
 * registry and the disk, unless it is no longer merely unpacked. A tarball the seed put in its
 * folder stays where it was. A release that ran (`ran`: rolled back after it started) stays: a
 * checkpoint written meanwhile may name it, and booting needs that release's code to read it.
 * Returns a sentence for the error message, saying which happened and how to remove what stays.
 */
export async function discardInstall(root: string, version: string, ran: boolean): Promise<string> {
  try {
    const registry = await readRegistry(root);
    const status = findEntry(registry, version)?.status;
    if (status !== 'unpacked') return `Release ${version} stays installed (${status ?? 'not in the registry'}).`;
    if (ran) return `Release ${version}, installed for this request, stays installed as unpacked (its code ran before the rollback); 'kernel remove ${version}' removes it.`;
    // The registry first: a crash in between leaves a folder that a later install adopts, never a
    // registry entry without its release.
    await writeRegistry(root, withoutRelease(registry, version));
    const dir = join(root, 'releases', version);
    const names = await readdir(dir).catch(() => [] as string[]);
    const tarballs = names.filter((name) => ARCHIVE_NAME.test(name));
    if (tarballs.length === 0) await rm(dir, { recursive: true, force: true });
    else for (const name of names) if (!tarballs.includes(name)) await rm(join(dir, name), { recursive: true, force: true });
    return `Release ${version}, installed for this request, was removed again${tarballs.length > 0 ? ` (its tarball stays in ${dir})` : ''}.`;
  } catch (error) {
    return `Release ${version}, installed for this request, stays installed as unpacked: it could not be removed (${errorMessage(error)}). Remove it with 'kernel remove ${version}'.`;
  }
}
