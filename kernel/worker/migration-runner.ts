// Running a service's migrations inside its worker: the path from one state vsn to another among
// the edges the code declares, each step up (in the new code) or down (in the newer code), and
// what each step returns checked as plain data. Failures are in phase 'migrate': the migration is
// what the operator must fix. Runs in a service's worker thread.

import { errorMessage, theseusError } from '../common/errors.ts';
import { findMigrationPath, formatPath, type MigrationStep } from '../common/migrations.ts';
import { findNonPlainData } from '../common/plain-data.ts';
import type { ServiceDescriptor } from '../common/protocol.ts';
import type { BaseContext, Migration, ServiceDefinition } from '../service.ts';

export class MigrationRunner {
  #service: string;
  #release: string;
  #definition: ServiceDefinition;
  #descriptor: ServiceDescriptor;

  constructor(service: string, release: string, definition: ServiceDefinition, descriptor: ServiceDescriptor) {
    this.#service = service;
    this.#release = release;
    this.#definition = definition;
    this.#descriptor = descriptor;
  }

  /** The path from `from` to `to`, or E_NO_MIGRATION_PATH naming this code. */
  pathOrThrow(from: string, to: string, direction: 'up' | 'down'): MigrationStep[] {
    const path = findMigrationPath(this.#descriptor.migrations, from, to, direction);
    if (!path) {
      const error = theseusError('E_NO_MIGRATION_PATH', this.#service, from, to, direction, `${this.#service}@${this.#release}`);
      error.phase = 'migrate';
      throw error;
    }
    return path;
  }

  /** Runs each step of `path` on `initial`; every result must be plain data. */
  async run(initial: unknown, path: MigrationStep[], ctx: BaseContext): Promise<unknown> {
    let state = initial;
    for (const step of path) {
      const label = `${step.from} -> ${step.to} (${step.direction})`;
      const migration = this.#migrationFor(step);
      try {
        state = await (step.direction === 'up' ? migration.up(state, ctx) : migration.down!(state, ctx));
      } catch (error) {
        const failure = theseusError('E_MIGRATION_FAILED', this.#service, label, errorMessage(error));
        failure.phase = 'migrate';
        throw failure;
      }
      const problem = state === undefined ? 'it returned undefined' : findNonPlainData(state);
      if (problem !== null) {
        const failure = theseusError('E_MIGRATION_BAD_STATE', this.#service, label, problem);
        failure.phase = 'migrate';
        throw failure;
      }
    }
    if (path.length > 0) ctx.log.debug(`migrated state ${formatPath(path)}`);
    return state;
  }

  #migrationFor(step: MigrationStep): Migration {
    const [from, to] = step.direction === 'up' ? [step.from, step.to] : [step.to, step.from];
    return this.#definition.migrations!.find((m) => m.from === from && m.to === to)!;
  }
}
