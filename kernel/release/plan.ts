// The upgrade plan (OTP's appup): how to go from the previous release to this one, service by
// service, and back. Pure functions; the build writes the result into the release as plan.json.

import { createHash } from 'node:crypto';
import { theseusError } from '../common/errors.ts';
import { findMigrationPath, type MigrationStep } from '../common/migrations.ts';
import { canonicalJson } from '../common/protocol.ts';
import { MANIFEST_SCHEMA_VERSION, type Manifest, type Plan, type ServicePlan } from './manifest.ts';

type PlannedManifest = Pick<Manifest, 'version' | 'services'> & Partial<Pick<Manifest, 'runtimeConfig' | 'files'>>;

/**
 * One digest of a service's static files (path and sha256 of each file under its staticDir), or
 * null when it has none: releases whose code and config agree but whose static files differ are
 * still a change, or the new files would never be served (a trap Distillery users fell into).
 */
export function staticDigest(files: Manifest['files'] | undefined, staticDir: string | null): string | null {
  if (staticDir === null || !files) return null;
  const prefix = `${staticDir}/`;
  const hash = createHash('sha256');
  for (const path of Object.keys(files).filter((file) => file.startsWith(prefix)).sort()) hash.update(`${path.slice(prefix.length)}\0${files[path]!.sha256}\n`);
  return hash.digest('hex');
}

/** The services new code starts and stops using, when they differ from the old code's. */
function rewiring(before: readonly string[], after: readonly string[]): Pick<ServicePlan, 'rewired'> {
  const uses = after.filter((name) => !before.includes(name));
  const stopsUsing = before.filter((name) => !after.includes(name));
  return uses.length > 0 || stopsUsing.length > 0 ? { rewired: { uses, stopsUsing } } : {};
}

const steps = (path: MigrationStep[]) => path.map((step) => `${step.from} -> ${step.to}`);

/** `services[name]` as an own key only: a service named `constructor` is not Object's. */
const own = <T>(services: Readonly<Record<string, T>> | undefined, name: string): T | undefined => (services && Object.hasOwn(services, name) ? services[name] : undefined);

/**
 * Plans `next` against `previous`. Throws E_NO_MIGRATION_PATH when a state vsn changes without a
 * chain of up migrations; a missing down chain is only a warning (downgrades will be refused).
 */
export function computePlan(previous: PlannedManifest | null, next: PlannedManifest): Plan {
  const services: Record<string, ServicePlan> = {};
  const warnings: string[] = [];
  const names = [...new Set([...Object.keys(previous?.services ?? {}), ...Object.keys(next.services)])].sort();
  for (const name of names) {
    const before = own(previous?.services, name);
    const after = own(next.services, name);
    if (!before && after) {
      services[name] = { change: 'added', fromVsn: null, toVsn: after.vsn, up: [], down: [] };
      continue;
    }
    if (before && !after) {
      services[name] = { change: 'removed', fromVsn: before.vsn, toVsn: null, up: [], down: [] };
      continue;
    }
    const [from, to] = [before!, after!];
    const rewired = rewiring(from.uses ?? [], to.uses ?? []);
    if (from.sha256 === to.sha256) {
      // The same code; a new runtimeConfig, new static files, another durability or pool size
      // still reach it through a swap.
      const settingsChanged =
        canonicalJson(previous!.runtimeConfig ?? {}) !== canonicalJson(next.runtimeConfig ?? {}) ||
        staticDigest(previous!.files, from.staticDir) !== staticDigest(next.files, to.staticDir) ||
        (from.durability ?? 'periodic') !== (to.durability ?? 'periodic') ||
        from.pool?.size !== to.pool?.size;
      services[name] = { change: settingsChanged ? 'config' : 'unchanged', fromVsn: from.vsn, toVsn: to.vsn, up: [], down: [] };
      continue;
    }
    if (from.vsn === to.vsn) {
      services[name] = { change: 'code', fromVsn: from.vsn, toVsn: to.vsn, up: [], down: [], ...rewired };
      continue;
    }
    // Both directions run in this (newer) release's code: up when upgrading to it, down when
    // leaving it for the previous one.
    const up = findMigrationPath(to.migrations, from.vsn, to.vsn, 'up');
    if (!up) throw theseusError('E_NO_MIGRATION_PATH', name, from.vsn, to.vsn, 'up', `${name}@${next.version}`);
    const down = findMigrationPath(to.migrations, to.vsn, from.vsn, 'down');
    if (!down) {
      warnings.push(`${name}: no down migration from vsn '${to.vsn}' to '${from.vsn}', so downgrading from ${next.version} to ${previous!.version} will be refused`);
    }
    services[name] = { change: 'vsn', fromVsn: from.vsn, toVsn: to.vsn, up: steps(up), down: down ? steps(down) : null, ...rewired };
  }
  return { schema: MANIFEST_SCHEMA_VERSION, from: previous?.version ?? null, to: next.version, services, warnings };
}
