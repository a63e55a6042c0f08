// A service module's definition, read inside a worker: is its default export a service, what does
// it declare (the descriptor the kernel plans with), and the logger its handlers get. Runs in
// every thread that runs service code (a service's worker and a pool's threads).

import { inspect } from 'node:util';
import { findNonPlainData } from '../common/plain-data.ts';
import type { LogRecord, ServiceDescriptor } from '../common/protocol.ts';
import type { Migration, ServiceDefinition, ServiceLogger } from '../service.ts';
import { argumentJson, isTypeBoxSchema } from './arg-checks.ts';
import { SOCKET_EVENTS } from '../common/socket-codec.ts';

/** A handler's `log`: each line is a record carrying the service's name and release. */
export function createServiceLogger(service: string, release: string, emitLog: (record: LogRecord) => void): ServiceLogger {
  const emit = (level: LogRecord['level'], message: string, data?: unknown) => {
    const record: LogRecord = { level, service, release, message: String(message), time: Date.now() };
    // Data that cannot cross threads is shown as text rather than lost.
    if (data !== undefined) record.data = findNonPlainData(data, 'data') === null ? data : inspect(data);
    emitLog(record);
  };
  return {
    debug: (message, data) => emit('debug', message, data),
    info: (message, data) => emit('info', message, data),
    warn: (message, data) => emit('warn', message, data),
    error: (message, data) => emit('error', message, data),
  };
}

export function describeDefinition(definition: ServiceDefinition): ServiceDescriptor {
  const descriptor: ServiceDescriptor = {
    vsn: definition.vsn,
    calls: Object.keys(definition.calls ?? {}),
    casts: Object.keys(definition.casts ?? {}),
    uses: [...(definition.uses ?? [])],
    migrations: (definition.migrations ?? []).map((m) => ({ from: m.from, to: m.to, hasDown: typeof m.down === 'function' })),
    hasTerminate: typeof definition.terminate === 'function',
    hasHealth: typeof definition.health === 'function',
    stateCheck: definition.stateCheck ?? 'transitions',
  };
  if (definition.keyed === true) descriptor.keyed = true;
  // Only when declared, so the descriptor (and the manifest) of a service without schemas is as before.
  const declared = Object.entries(definition.args ?? {});
  if (declared.length > 0) descriptor.args = Object.fromEntries(declared.map(([method, schemas]) => [method, schemas.map(argumentJson)]));
  return descriptor;
}

/** Checks a module's default export before anything runs; returns a reason or null. */
export function validateDefinition(value: unknown): string | null {
  if (value === null || typeof value !== 'object') return 'the default export is not an object';
  const def = value as Partial<ServiceDefinition> & Record<string, unknown>;
  if (typeof def.vsn !== 'string' || def.vsn === '') return "'vsn' must be a non-empty string";
  if (typeof def.init !== 'function') return "'init' must be a function that returns the first state";
  if (def.sockets !== undefined) {
    if (def.sockets === null || typeof def.sockets !== 'object') return "'sockets' must be an object of socket handlers (open, message, close, restarted)";
    for (const [name, fn] of Object.entries(def.sockets)) {
      if (!(SOCKET_EVENTS as readonly string[]).includes(name)) return `sockets.${name} is not a socket event (they are: ${SOCKET_EVENTS.join(', ')})`;
      if (typeof fn !== 'function') return `sockets.${name} is not a function`;
    }
  }
  for (const group of ['calls', 'casts'] as const) {
    const handlers = def[group];
    if (handlers === undefined) continue;
    if (handlers === null || typeof handlers !== 'object') return `'${group}' must be an object of functions`;
    for (const [name, fn] of Object.entries(handlers)) {
      if (typeof fn !== 'function') return `${group}.${name} is not a function`;
    }
  }
  const calls = Object.keys(def.calls ?? {});
  const clash = Object.keys(def.casts ?? {}).find((name) => calls.includes(name));
  if (clash) return `'${clash}' is both a call and a cast`;
  const argsProblem = validateArgs(def.args, def);
  if (argsProblem) return argsProblem;
  if (def.uses !== undefined && (!Array.isArray(def.uses) || def.uses.some((u) => typeof u !== 'string'))) {
    return "'uses' must be an array of service names";
  }
  if (def.terminate !== undefined && typeof def.terminate !== 'function') return "'terminate' must be a function";
  if (def.health !== undefined && typeof def.health !== 'function') return "'health' must be a function";
  if (def.stateCheck !== undefined && def.stateCheck !== 'transitions' && def.stateCheck !== 'every-change') {
    return "'stateCheck' must be 'transitions' or 'every-change'";
  }
  if (def.keyed !== undefined && typeof def.keyed !== 'boolean') return "'keyed' must be true or false";
  const migrations = def.migrations ?? [];
  if (!Array.isArray(migrations)) return "'migrations' must be an array";
  const seen = new Set<string>();
  for (const [index, m] of migrations.entries()) {
    const migration = m as Partial<Migration>;
    if (typeof migration.from !== 'string' || typeof migration.to !== 'string') return `migrations[${index}] needs string 'from' and 'to'`;
    if (migration.from === migration.to) return `migrations[${index}] goes from '${migration.from}' to itself`;
    if (typeof migration.up !== 'function') return `migrations[${index}] (${migration.from} -> ${migration.to}) needs an 'up' function`;
    if (migration.down !== undefined && typeof migration.down !== 'function') return `migrations[${index}].down must be a function`;
    for (const name of ['upEntry', 'downEntry'] as const) {
      if (migration[name] === undefined) continue;
      if (typeof migration[name] !== 'function') return `migrations[${index}].${name} must be a function`;
      if (def.keyed !== true) return `migrations[${index}].${name} migrates entries of a keyed store, but the service does not say keyed: true`;
    }
    if (migration.downEntry !== undefined && migration.down === undefined) return `migrations[${index}] (${migration.from} -> ${migration.to}) has downEntry but no down; add down (it may return the state as it is)`;
    const key = `${migration.from}->${migration.to}`;
    if (seen.has(key)) return `two migrations go from '${migration.from}' to '${migration.to}'`;
    seen.add(key);
  }
  return null;
}

/** `args`: an object of arrays of TypeBox schemas, each for a call or cast the service has. */
function validateArgs(args: unknown, def: Partial<ServiceDefinition>): string | null {
  if (args === undefined) return null;
  if (args === null || typeof args !== 'object' || Array.isArray(args)) return "'args' must be an object: for each call or cast, an array of TypeBox schemas";
  for (const [method, schemas] of Object.entries(args)) {
    if (!Object.hasOwn(def.calls ?? {}, method) && !Object.hasOwn(def.casts ?? {}, method)) return `args.${method} names no call or cast of the service`;
    if (!Array.isArray(schemas)) return `args.${method} must be an array of TypeBox schemas, one per argument (e.g. [Type.Integer()])`;
    for (const [index, schema] of schemas.entries()) {
      if (!isTypeBoxSchema(schema)) return `args.${method}[${index}] is not a TypeBox schema; build it with Type from '@sinclair/typebox' (e.g. Type.Integer())`;
      try {
        JSON.stringify(schema);
      } catch (error) {
        return `args.${method}[${index}] cannot be written as JSON (${error instanceof Error ? error.message : String(error)})`;
      }
    }
  }
  return null;
}
