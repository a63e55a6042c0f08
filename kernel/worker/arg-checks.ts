// The argument checks of a service's calls and casts, compiled once from the TypeBox schemas its
// definition declares (`args`). Every thread that runs service code checks a call here before its
// handler runs: a service's worker (single calls and batches), a pool's threads, and the
// `check-args` control op; so every door (another service's port, the kernel's client, the
// console, the HTTP front door) gets the same answer.

import { Kind, OptionalKind, type TSchema } from '@sinclair/typebox';
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler';
import { argumentText, schemaText, signatureText } from '../common/arg-schemas.ts';
import { theseusError, type TheseusError } from '../common/errors.ts';
import type { ArgumentSchema } from '../common/protocol.ts';
import type { ServiceDefinition } from '../service.ts';

export interface ArgsCheck {
  /** `incrementNumber(delta: integer)`, for messages. */
  readonly signature: string;
  /** Whether a frame's arguments (undefined when none were sent) fit: the hot path, allocates nothing. */
  accepts(args: readonly unknown[] | undefined): boolean;
  /** Why they do not fit; only after accepts() said false. */
  problem(args: readonly unknown[] | undefined, subject?: (index: number) => string): string;
}

/** One check per method that declares its arguments. */
export type ArgsChecks = ReadonlyMap<string, ArgsCheck>;

/** Compiled once per definition object: every runtime of a thread shares them. */
const compiled = new WeakMap<object, ArgsChecks>();

/**
 * The checks of a definition's `args`, compiled on first use (TypeBox's compiler builds one
 * function per schema). Throws an Error naming the schema that cannot be compiled;
 * loadServiceDefinition turns it into E_INVALID_SERVICE before anything runs.
 */
export function argsChecksOf(definition: ServiceDefinition): ArgsChecks {
  let checks = compiled.get(definition);
  if (!checks) {
    const built = new Map<string, ArgsCheck>();
    for (const [method, schemas] of Object.entries(definition.args ?? {})) built.set(method, compileArgs(method, schemas));
    checks = built;
    compiled.set(definition, checks);
  }
  return checks;
}

/** Whether a value is a TypeBox schema (not a plain JSON Schema, which TypeBox cannot compile). */
export function isTypeBoxSchema(value: unknown): value is TSchema {
  return value !== null && typeof value === 'object' && typeof (value as Record<symbol, unknown>)[Kind] === 'string';
}

/**
 * Whether an argument is `Type.Optional(...)`: it may be left out (or be undefined). TypeBox
 * honours Optional only on an object's properties, so the check does it for arguments.
 */
export function isOptionalArgument(schema: TSchema): boolean {
  return (schema as { [OptionalKind]?: unknown })[OptionalKind] === 'Optional';
}

/**
 * An argument's schema as plain JSON Schema: TypeBox's symbol keys dropped, so it can travel and be
 * stored. An optional argument reads as its schema or undefined, which is how it is checked.
 */
export function argumentJson(schema: TSchema): ArgumentSchema {
  const json = JSON.parse(JSON.stringify(schema)) as Record<string, unknown>;
  if (!isOptionalArgument(schema)) return json;
  const { title, description, ...inner } = json;
  return { ...(title === undefined ? {} : { title }), ...(description === undefined ? {} : { description }), anyOf: [inner, { type: 'undefined' }] };
}

/** How a refusal names the argument of a request from the front door: its client sent a request, not arguments. */
export const requestSubject = () => 'the request';

/** The coded error of a refused call or cast. */
export function argsRefused(service: string, method: string, check: ArgsCheck, args: readonly unknown[] | undefined, subject?: (index: number) => string): TheseusError {
  return theseusError('E_ARGS_INVALID', service, method, check.problem(args, subject), check.signature);
}

function compileArgs(method: string, schemas: readonly TSchema[]): ArgsCheck {
  const checks: Array<TypeCheck<TSchema>> = schemas.map((schema, index) => {
    try {
      return TypeCompiler.Compile(schema);
    } catch (error) {
      throw new Error(`args.${method}[${index}] cannot be compiled (${error instanceof Error ? error.message : String(error)})`);
    }
  });
  const count = checks.length;
  const optional = schemas.map(isOptionalArgument);
  const fits = (index: number, value: unknown) => (value === undefined && optional[index]!) || checks[index]!.Check(value);
  const name = (index: number) => {
    const title = schemas[index]!.title;
    return `argument ${index}${typeof title === 'string' && title !== '' ? ` (${title})` : ''}`;
  };
  // Messages read the form the descriptor carries, so an error says what `.help` says.
  const described = schemas.map(argumentJson);
  return {
    signature: signatureText(method, described),
    accepts(args) {
      const given = args === undefined ? 0 : args.length;
      if (given > count) return false;
      // A missing argument is checked as undefined: only an optional argument, or a schema that
      // accepts undefined, may be left out.
      for (let i = 0; i < count; i++) if (!fits(i, i < given ? args![i] : undefined)) return false;
      return true;
    },
    problem(args, subject = name) {
      const given = args === undefined ? 0 : args.length;
      if (given > count) return `it takes ${count === 0 ? 'no arguments' : `${count} argument${count === 1 ? '' : 's'}`} and was given ${given}`;
      for (let i = 0; i < count; i++) {
        const value = i < given ? args![i] : undefined;
        if (fits(i, value)) continue;
        if (i >= given) return `${subject(i)} is missing: expected ${argumentText(described[i]!)}`;
        const first = checks[i]!.Errors(value).First();
        if (!first) return `${subject(i)} does not match: expected ${schemaText(described[i])}, got ${valueText(value)}`;
        const at = first.path === '' ? '' : ` at ${first.path}`;
        return `${subject(i)}${at} should be ${schemaText(first.schema)}, and is ${valueText(first.value)}`;
      }
      return 'no mismatch was found';
    },
  };
}

/** A value as the message shows it: short, and saying what kind of thing it is. */
function valueText(value: unknown): string {
  if (value === undefined) return 'missing';
  if (typeof value === 'string') return `the string ${clip(JSON.stringify(value))}`;
  if (typeof value === 'bigint') return `the bigint ${value}n`;
  if (typeof value !== 'object' || value === null) return String(value);
  if (value instanceof Uint8Array) return `${value.byteLength} bytes`;
  if (Array.isArray(value)) return `an array ${clip(jsonOrTag(value))}`;
  const tag = Object.prototype.toString.call(value).slice(8, -1);
  return tag === 'Object' ? `the object ${clip(jsonOrTag(value))}` : `a ${tag}`;
}

function jsonOrTag(value: object): string {
  try {
    return JSON.stringify(value) ?? '';
  } catch {
    return Object.prototype.toString.call(value);
  }
}

function clip(text: string): string {
  return text.length <= 60 ? text : `${text.slice(0, 57)}...`;
}
