// Running a service's migrations inside its worker: the path from one state vsn to another among
// the edges the code declares, each step up (in the new code) or down (in the newer code), and
// what each step returns checked as plain data. Failures are in phase 'migrate': the migration is
// what the operator must fix. Runs in a service's worker thread.

import { errorMessage, theseusError } from '../common/errors.ts';
import { findMigrationPath, formatPath, type MigrationStep } from '../common/migrations.ts';
import { findNonPlainData } from '../common/plain-data.ts';
import type { ServiceDescriptor } from '../common/protocol.ts';
import type { BaseContext, Migration, ServiceDefinition, StoreKey } from '../service.ts';

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

  /**
   * The entry migrations (upEntry / downEntry) along `path`, as one function that migrates one
   * entry of a keyed store, or null when no step has one (entries keep their values). Synchronous
   * on purpose: it runs once per entry, for maybe millions of them, between the old worker's calls.
   */
  entryMigration(path: MigrationStep[]): ((value: unknown, key: StoreKey) => unknown) | null {
    const steps = path.flatMap((step) => {
      const migration = this.#migrationFor(step);
      const fn = step.direction === 'up' ? migration.upEntry : migration.downEntry;
      return fn ? [{ fn, label: `${step.from} -> ${step.to} (${step.direction})` }] : [];
    });
    if (steps.length === 0) return null;
    return (value, key) => {
      let migrated = value;
      for (const { fn, label } of steps) {
        try {
          migrated = fn(migrated, key);
        } catch (error) {
          throw this.#entryFailure(label, key, errorMessage(error));
        }
        if (migrated !== null && typeof migrated === 'object' && typeof (migrated as Promise<unknown>).then === 'function') {
          throw this.#entryFailure(label, key, 'it returned a promise; entry migrations must be synchronous');
        }
        const problem = migrated === undefined ? 'it returned undefined' : findNonPlainData(migrated, 'entry');
        if (problem !== null) throw this.#entryFailure(label, key, `it returned data that is not plain: ${problem}`);
      }
      return migrated;
    };
  }

  #entryFailure(label: string, key: StoreKey, message: string) {
    const failure = theseusError('E_ENTRY_MIGRATION_FAILED', this.#service, label, JSON.stringify(key), message);
    failure.phase = 'migrate';
    return failure;
  }

  #migrationFor(step: MigrationStep): Migration {
    const [from, to] = step.direction === 'up' ? [step.from, step.to] : [step.to, step.from];
    return this.#definition.migrations!.find((m) => m.from === from && m.to === to)!;
  }
}
