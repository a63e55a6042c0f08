// Installing a release into a deploy root: from a release folder, a tarball, or a version already
// there. Used by the kernel's main thread (upgrade) and the CLI. Everything is staged in a fresh
// folder under `releases/` and verified against the manifest's hashes before one rename makes it
// visible, so a failure never leaves a half-installed release behind.

import { randomBytes } from 'node:crypto';
import { cp, mkdir, readdir, readFile, rename, rm, rmdir, stat } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import semver from 'semver';
import { TheseusError, errorMessage, theseusError } from '../common/errors.ts';
import { sha256 } from './fs-atomic.ts';
import { ManifestSchema, PlanSchema, validateOrThrow, type Manifest, type Plan } from './manifest.ts';
import { SIGNATURE_FILE, checkSignature } from './signing.ts';
import { readRegistry, withUnpacked, writeRegistry } from './registry.ts';
import { DEFAULT_TAR_LIMITS, extractTarball, looksLikeTarball, type TarLimits } from './tarball.ts';

export interface InstalledRelease {
  version: string;
  dir: string;
  manifest: Manifest;
  plan: Plan | null;
  manifestSha256: string;
  /** True when the same version with the same contents was already installed. */
  alreadyInstalled: boolean;
}

/** Files a release folder may hold besides those its manifest lists. */
function isReleaseMetadata(path: string): boolean {
  return path === 'manifest.json' || path === SIGNATURE_FILE || (!path.includes('/') && path.endsWith('.tar.gz'));
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

/** Reads and checks a release folder: schema, every listed file's size and hash, no extra files. */
export async function verifyReleaseDir(dir: string, trustRoot?: string): Promise<{ manifest: Manifest; plan: Plan | null; manifestSha256: string }> {
  const manifestFile = join(dir, 'manifest.json');
  const manifestText = await readFile(manifestFile, 'utf8').catch(() => null);
  if (manifestText === null) throw theseusError('E_RELEASE_MISSING_FILE', manifestFile);
  let parsed: unknown;
  try {
    parsed = JSON.parse(manifestText);
  } catch (error) {
    throw theseusError('E_MANIFEST_INVALID', manifestFile, 'release manifest', `not JSON (${(error as Error).message})`);
  }
  const manifest = validateOrThrow(ManifestSchema, parsed, manifestFile);
  // With trusted keys in the deploy root, nothing unsigned gets further than this.
  if (trustRoot !== undefined) await checkSignature(trustRoot, dir, manifestText);
  for (const [name, service] of Object.entries(manifest.services)) {
    const listed = manifest.files[service.entry];
    if (!listed || listed.sha256 !== service.sha256) {
      throw theseusError('E_MANIFEST_INVALID', manifestFile, 'release manifest', `services.${name}.entry '${service.entry}' is not a listed file with sha256 ${service.sha256.slice(0, 12)}...`);
    }
  }
  const present = await listFiles(dir);
  for (const file of present) {
    if (!isReleaseMetadata(file) && !(file in manifest.files)) throw theseusError('E_RELEASE_EXTRA_FILE', join(dir, file));
  }
  for (const [file, expected] of Object.entries(manifest.files)) {
    const contents = await readFile(join(dir, file)).catch(() => null);
    if (contents === null) throw theseusError('E_RELEASE_MISSING_FILE', join(dir, file));
    const actual = sha256(contents);
    if (actual !== expected.sha256 || contents.byteLength !== expected.size) {
      throw theseusError('E_RELEASE_HASH_MISMATCH', join(dir, file), expected.sha256, actual);
    }
  }
  let plan: Plan | null = null;
  if ('plan.json' in manifest.files) {
    plan = validateOrThrow(PlanSchema, JSON.parse(await readFile(join(dir, 'plan.json'), 'utf8')), join(dir, 'plan.json'));
  }
  return { manifest, plan, manifestSha256: sha256(manifestText) };
}

export interface InstallOptions {
  limits?: TarLimits;
  /** Told how long unpacking and verifying took, as they finish. */
  onStep?: (step: 'unpack' | 'verify', ms: number) => void;
}

/**
 * Installs `source` into `root/releases/<version>/` and records it in the registry as unpacked.
 * `source` is a release folder, a .tar.gz, or the version of a release already under `root`
 * (unpacked, or with its tarball copied into `releases/<version>/`, as the seed deploys).
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
  const staging = join(releasesDir, `.staging-${randomBytes(6).toString('hex')}`);
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
    let candidate: string;
    if (resolved.kind === 'tarball') {
      await mkdir(staging, { mode: 0o755 });
      const entries = await extractTarball(resolved.path, staging, options.limits ?? DEFAULT_TAR_LIMITS);
      const manifests = entries.filter((entry) => /^releases\/[^/]+\/manifest\.json$/.test(entry.path));
      if (manifests.length !== 1) {
        throw theseusError('E_MANIFEST_INVALID', resolved.path, 'release archive', `it holds ${manifests.length} release manifests (expected exactly one under releases/<version>/)`);
      }
      candidate = join(staging, manifests[0]!.path.replace(/\/manifest\.json$/, ''));
    } else {
      candidate = resolved.path;
    }
    step('unpack');
    const { manifest, plan, manifestSha256 } = await verifyReleaseDir(candidate, root);
    step('verify');
    const target = join(releasesDir, manifest.version);
    const existing = await stat(join(target, 'manifest.json')).catch(() => null);
    if (existing) {
      const installed = await verifyReleaseDir(target, root);
      if (installed.manifestSha256 !== manifestSha256) throw theseusError('E_RELEASE_CONFLICT', manifest.version, releasesDir);
      await recordUnpacked(root, manifest.version, manifestSha256);
      return { version: manifest.version, dir: target, manifest, plan, manifestSha256, alreadyInstalled: true };
    }
    if (resolved.kind === 'folder') {
      // Copy only what the manifest lists, then verify the copy: the source may change meanwhile.
      await mkdir(staging, { mode: 0o755 });
      const signed = await stat(join(candidate, SIGNATURE_FILE)).catch(() => null);
      for (const file of ['manifest.json', ...(signed ? [SIGNATURE_FILE] : []), ...Object.keys(manifest.files)]) {
        await mkdir(join(staging, file, '..'), { recursive: true });
        await cp(join(candidate, file), join(staging, file));
      }
      candidate = staging;
      await verifyReleaseDir(candidate, root);
    }
    if (await stat(target).catch(() => null)) {
      // releases/<version>/ holding only the tarball it came from (the seed's way of deploying):
      // keep the tarball with the release, then put the verified release in its place.
      for (const name of await readdir(target)) {
        if (!name.endsWith('.tar.gz')) throw theseusError('E_RELEASE_CONFLICT', manifest.version, `${target} (it holds ${name} but no manifest)`);
        await rename(join(target, name), join(candidate, name));
      }
      await rmdir(target);
    }
    await rename(candidate, target);
    await recordUnpacked(root, manifest.version, manifestSha256);
    return { version: manifest.version, dir: target, manifest, plan, manifestSha256, alreadyInstalled: false };
  }
}

/** Adds the release to the registry as unpacked; writes nothing when it is already there. */
async function recordUnpacked(root: string, version: string, manifestSha256: string): Promise<void> {
  const registry = await readRegistry(root);
  const next = withUnpacked(registry, version, manifestSha256);
  if (next !== registry) await writeRegistry(root, next);
}

async function resolveSource(root: string, source: string): Promise<{ kind: 'folder' | 'tarball'; path: string }> {
  const info = await stat(source).catch(() => null);
  if (info?.isDirectory()) {
    if (await stat(join(source, 'manifest.json')).catch(() => null)) return { kind: 'folder', path: source };
    // A folder holding only the release's tarball (the seed copies it into releases/<version>/).
    const tarballs = (await readdir(source)).filter((name) => name.endsWith('.tar.gz'));
    if (tarballs.length === 1) return { kind: 'tarball', path: join(source, tarballs[0]!) };
  }
  if (info?.isFile() && (await looksLikeTarball(source))) return { kind: 'tarball', path: source };
  if (semver.valid(source)) return resolveSource(root, join(root, 'releases', source));
  const known = (await readdir(join(root, 'releases')).catch(() => [] as string[])).filter((name) => semver.valid(name));
  throw theseusError('E_RELEASE_NOT_FOUND', source, known.join(', '));
}
