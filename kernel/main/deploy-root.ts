// Booting a kernel from a deploy root: the repo in development, or an unpacked release tarball.
// Runs in the kernel's main thread.
//
//   <root>/releases/RELEASES        which release is permanent (the one that boots)
//   <root>/releases/<version>/      its manifest and bundles, verified before anything runs
//   <root>/var/                     the kernel's own files (common/deploy-paths.ts lists them)

import { join } from 'node:path';
import semver from 'semver';
import { theseusError } from '../common/errors.ts';
import { PROTOCOL_VERSION, type LogRecord, type ServiceSource } from '../common/protocol.ts';
import { verifyReleaseDir } from '../release/install.ts';
import type { Manifest } from '../release/manifest.ts';
import { staticDigest } from '../release/plan.ts';
import { permanentVersion, readRegistry, withTrialReverted, writeRegistry } from '../release/registry.ts';
import { Kernel } from './kernel.ts';

/** The services of a verified release, as the kernel takes them. */
export function serviceSources(dir: string, manifest: Manifest): Record<string, ServiceSource> {
  return Object.fromEntries(
    Object.entries(manifest.services).map(([name, service]) => {
      const { entry, sha256, staticDir, pool, durability, ...descriptor } = service;
      const source: ServiceSource = { bundle: { file: join(dir, entry), sha256 }, descriptor, config: manifest.runtimeConfig };
      if (pool) source.pool = pool;
      if (durability) source.durability = durability;
      if (staticDir !== null) {
        source.staticDir = join(dir, staticDir);
        source.staticDigest = staticDigest(manifest.files, staticDir)!;
      }
      return [name, source];
    }),
  );
}

export function assertCompatible(manifest: Manifest): void {
  if (manifest.protocol !== PROTOCOL_VERSION) {
    throw theseusError('E_RELEASE_INCOMPATIBLE', manifest.version, `it was built for kernel protocol ${manifest.protocol}, this kernel speaks ${PROTOCOL_VERSION}; restart on a kernel of the same generation`);
  }
  if (!semver.satisfies(process.versions.node, manifest.node)) {
    throw theseusError('E_RELEASE_INCOMPATIBLE', manifest.version, `it needs Node.js ${manifest.node}, this is ${process.versions.node}`);
  }
}

export interface BootedRoot {
  kernel: Kernel;
  version: string;
  manifest: Manifest;
  /** A trial release that was running when the kernel last stopped, now reverted. */
  revertedTrial: string | null;
}

/** Boots the permanent release of `root`. A trial (uncommitted) release reverts, as in OTP. */
export async function startFromRoot(root: string, onLog?: (record: LogRecord) => void): Promise<BootedRoot> {
  let registry = await readRegistry(root);
  const version = permanentVersion(registry);
  if (!version) {
    const listed = registry.releases.map((entry) => `${entry.version} (${entry.status})`).join(', ');
    throw theseusError(
      'E_NO_RELEASE_TO_START',
      root,
      listed ? `none of its releases is permanent (${listed})` : 'no release is installed',
      "Run the kernel in a deploy root unpacked from a release tarball (or give one with --root); in a project, 'kernel start' builds a release and makes it permanent first.",
    );
  }
  const trial = registry.releases.find((entry) => entry.status === 'current')?.version ?? null;
  if (trial) {
    registry = withTrialReverted(registry);
    await writeRegistry(root, registry);
  }
  const dir = join(root, 'releases', version);
  const { manifest } = await verifyReleaseDir(dir, root);
  assertCompatible(manifest);
  const kernel = await Kernel.start({
    release: version,
    services: serviceSources(dir, manifest),
    drainTimeoutMs: manifest.drainTimeoutMs,
    cacheDir: join(root, 'var', 'cache'),
    stateDir: join(root, 'var', 'state'),
    checkpointIntervalMs: manifest.checkpointIntervalMs,
    checkpointEveryChanges: manifest.checkpointEveryChanges,
    ...(manifest.precopy ? { precopy: manifest.precopy } : {}),
    maxRestarts: manifest.maxRestarts,
    restartWindowMs: manifest.restartWindowMs,
    ...(manifest.spareWorkers !== undefined ? { spareWorkers: manifest.spareWorkers } : {}),
    resolveRelease: async (other) => {
      const otherDir = join(root, 'releases', other);
      const verified = await verifyReleaseDir(otherDir).catch(() => null);
      return verified ? serviceSources(otherDir, verified.manifest) : null;
    },
    ...(onLog ? { onLog } : {}),
  });
  return { kernel, version, manifest, revertedTrial: trial };
}
