// The registry of releases in a deploy root (`releases/RELEASES`), as OTP's RELEASES file: which
// releases are on disk and which one boots. Written atomically; read by the CLI and the kernel.
//
// Statuses:
//   unpacked   on disk and verified, never run
//   current    running now on trial (installed with --no-commit); reverts on restart
//   permanent  what the kernel boots; usually also what runs
//   old        ran before; kept so a downgrade can go back to it

import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import semver from 'semver';
import { errorMessage, theseusError } from '../common/errors.ts';
import { injectFault } from '../common/faults.ts';
import { writeFileAtomic } from './fs-atomic.ts';
import { Version } from './manifest.ts';

export const RegistryEntrySchema = Type.Object(
  {
    /** A version, never a path: `kernel remove` deletes releases/<version>/. */
    version: Version,
    status: Type.Union([Type.Literal('unpacked'), Type.Literal('current'), Type.Literal('permanent'), Type.Literal('old')]),
    /** sha256 of the release's manifest.json: the identity of its contents. */
    manifestSha256: Type.String({ pattern: '^[0-9a-f]{64}$' }),
    installedAt: Type.String(),
  },
  { additionalProperties: false },
);
export const RegistrySchema = Type.Object({ schema: Type.Literal(1), releases: Type.Array(RegistryEntrySchema) }, { additionalProperties: false });

export type Registry = Static<typeof RegistrySchema>;
export type RegistryEntry = Static<typeof RegistryEntrySchema>;
export type ReleaseStatus = RegistryEntry['status'];

export function registryFile(root: string): string {
  return join(root, 'releases', 'RELEASES');
}

export async function readRegistry(root: string): Promise<Registry> {
  const file = registryFile(root);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { schema: 1, releases: [] };
    throw theseusError('E_REGISTRY_INVALID', file, errorMessage(error));
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw theseusError('E_REGISTRY_INVALID', file, `not JSON (${errorMessage(error)})`);
  }
  if (!Value.Check(RegistrySchema, parsed)) {
    const first = [...Value.Errors(RegistrySchema, parsed)][0];
    throw theseusError('E_REGISTRY_INVALID', file, `${first?.path || '/'} ${first?.message ?? 'does not match the schema'}`);
  }
  return parsed;
}

export async function writeRegistry(root: string, registry: Registry): Promise<void> {
  const sorted: Registry = { schema: 1, releases: [...registry.releases].sort((a, b) => semver.compare(a.version, b.version)) };
  injectFault('registry-write');
  await writeFileAtomic(registryFile(root), `${JSON.stringify(sorted, null, 2)}\n`);
}

export function findEntry(registry: Registry, version: string): RegistryEntry | undefined {
  return registry.releases.find((entry) => entry.version === version);
}

/** The release a restart boots. A trial ('current') release is never booted: OTP's rule. */
export function permanentVersion(registry: Registry): string | null {
  return registry.releases.find((entry) => entry.status === 'permanent')?.version ?? null;
}

/** Records a newly unpacked release (no-op when it is already there with the same contents). */
export function withUnpacked(registry: Registry, version: string, manifestSha256: string): Registry {
  if (findEntry(registry, version)) return registry;
  return { ...registry, releases: [...registry.releases, { version, status: 'unpacked', manifestSha256, installedAt: new Date().toISOString() }] };
}

/** Makes `version` the permanent release; the previous permanent one becomes old. */
export function withPermanent(registry: Registry, version: string): Registry {
  return {
    ...registry,
    releases: registry.releases.map((entry) =>
      entry.version === version ? { ...entry, status: 'permanent' } : entry.status === 'permanent' || entry.status === 'current' ? { ...entry, status: 'old' } : entry,
    ),
  };
}

/** Marks `version` as running on trial; the permanent release stays what boots. */
export function withCurrent(registry: Registry, version: string): Registry {
  return {
    ...registry,
    releases: registry.releases.map((entry) =>
      entry.version === version ? { ...entry, status: entry.status === 'permanent' ? 'permanent' : 'current' } : entry.status === 'current' ? { ...entry, status: 'old' } : entry,
    ),
  };
}

/** After a restart the trial release is no longer running. */
export function withTrialReverted(registry: Registry): Registry {
  return { ...registry, releases: registry.releases.map((entry) => (entry.status === 'current' ? { ...entry, status: 'old' } : entry)) };
}

export function withoutRelease(registry: Registry, version: string): Registry {
  const entry = findEntry(registry, version);
  if (!entry) throw theseusError('E_RELEASE_NOT_INSTALLED', version, registry.releases.map((e) => e.version).join(', '), "There is nothing to remove; 'kernel releases' lists what is installed.");
  if (entry.status === 'permanent' || entry.status === 'current') throw theseusError('E_REMOVE_REFUSED', version, entry.status);
  return { ...registry, releases: registry.releases.filter((e) => e.version !== version) };
}

/** What a release tarball's own registry says of the release in it: it records no time, so the archive is the same on every build. */
const UNRECORDED_INSTALL = new Date(0).toISOString();

/**
 * The registry with a real install time for the release a tarball brought (its entry holds the
 * epoch): when its manifest.json was written here, which is when the tarball was unpacked. For
 * showing; nothing is written.
 */
export async function withInstallTimes(root: string, registry: Registry): Promise<Registry> {
  const releases = await Promise.all(
    registry.releases.map(async (entry) => {
      if (entry.installedAt !== UNRECORDED_INSTALL) return entry;
      const unpacked = await stat(join(root, 'releases', entry.version, 'manifest.json')).catch(() => null);
      return unpacked ? { ...entry, installedAt: unpacked.ctime.toISOString() } : entry;
    }),
  );
  return { ...registry, releases };
}
