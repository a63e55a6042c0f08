// The upgrade plan (OTP's appup): how to go from the previous release to this one, service by
// service, and back. Pure functions; the build writes the result into the release as plan.json.

import { theseusError } from '../common/errors.ts';
import { findMigrationPath, type MigrationStep } from '../common/migrations.ts';
import { MANIFEST_SCHEMA_VERSION, type Manifest, type Plan, type ServicePlan } from './manifest.ts';

type PlannedManifest = Pick<Manifest, 'version' | 'services'>;

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
    if (from.sha256 === to.sha256) {
      services[name] = { change: 'unchanged', fromVsn: from.vsn, toVsn: to.vsn, up: [], down: [] };
      continue;
    }
    if (from.vsn === to.vsn) {
      services[name] = { change: 'code', fromVsn: from.vsn, toVsn: to.vsn, up: [], down: [] };
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
    services[name] = { change: 'vsn', fromVsn: from.vsn, toVsn: to.vsn, up: steps(up), down: down ? steps(down) : null };
  }
  return { schema: MANIFEST_SCHEMA_VERSION, from: previous?.version ?? null, to: next.version, services, warnings };
}
