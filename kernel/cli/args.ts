// The command line's arguments, read strictly: an unknown option (with the closest known one), a
// missing or extra argument and a bad number are usage errors, never guessed at. Runs in the CLI's
// process; loads nothing but node: modules and the error registry.

import { parseArgs } from 'node:util';
import { theseusError, type TheseusError } from '../common/errors.ts';

export interface OptionSpec {
  type: 'string' | 'boolean';
  description: string;
  short?: string;
  /** The value is a whole number from 0 up (a count of lines, milliseconds). */
  whole?: boolean;
  /** How --help shows the value: `--lines <n>`. */
  placeholder?: string;
}

export type Options = Record<string, OptionSpec>;

/** A positional argument the verb requires, and how to ask for it when it is missing. */
export interface ArgumentSpec {
  name: string;
  missing: string;
}

export interface ParsedArgs {
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
}

/** A usage error of `kernel <verb>`, coded E_USAGE (exit 2); the CLI localizes its commands as it prints it. */
export function usageError(verb: string | null, problem: string): TheseusError {
  return theseusError('E_USAGE', problem, `kernel ${verb ? `${verb} ` : ''}--help`);
}

/** Edit distance between two short words (options and verbs): the typo's size. */
function distance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length]!;
}

/** The known word a typo most likely meant, if one is close enough to suggest. */
export function closest(typed: string, known: readonly string[]): string | null {
  const bare = (word: string) => word.replace(/^-+/, '');
  let best: { word: string; score: number } | null = null;
  for (const word of known) {
    const score = distance(bare(typed), bare(word));
    // A prefix is what a hurried typist leaves (--no for --no-commit); otherwise one typo in three letters.
    const close = score <= Math.max(1, Math.floor(bare(word).length / 3)) || (bare(typed).length >= 2 && bare(word).startsWith(bare(typed)));
    if (close && (!best || score < best.score)) best = { word, score };
  }
  return best?.word ?? null;
}

/** Parses `args` for `verb`: every option known, every value well-formed, the positionals counted. */
export function parseVerbArgs(verb: string, args: string[], options: Options, required: readonly ArgumentSpec[]): ParsedArgs {
  const config = Object.fromEntries(Object.entries(options).map(([name, { type, short }]) => [name, short ? { type, short } : { type }]));
  const { values, positionals, tokens } = parseArgs({ args, options: config, allowPositionals: true, strict: false, tokens: true });
  const flags = Object.entries(options).flatMap(([name, spec]) => [`--${name}`, ...(spec.short ? [`-${spec.short}`] : [])]);
  for (const token of tokens) {
    if (token.kind !== 'option') continue;
    const spec = Object.hasOwn(options, token.name) ? options[token.name]! : null;
    if (!spec) {
      const suggestion = closest(token.rawName, [...flags, '--help']);
      const takes = Object.keys(options).map((name) => `--${name}`).join(', ');
      throw usageError(verb, `unknown option '${token.rawName}'${suggestion ? `; did you mean '${suggestion}'?` : ` (${verb} takes ${takes || 'no options'})`}`);
    }
    const shown = `${spec.short ? `-${spec.short}/` : ''}--${token.name}`;
    if (spec.type === 'boolean' && token.value !== undefined) throw usageError(verb, `option ${shown} takes no value (got '${token.value}')`);
    // `--root --json` would take '--json' as the folder: a value never starts with '--' unless given with '='.
    if (spec.type === 'string' && (token.value === undefined || (!token.inlineValue && token.value.startsWith('--')))) {
      throw usageError(verb, `option ${shown} needs a value: ${shown} <${spec.placeholder ?? 'value'}>`);
    }
    if (spec.whole && !/^\d+$/.test(String(token.value))) throw usageError(verb, `option ${shown} takes a whole number from 0 up, not '${token.value}'`);
  }
  if (positionals.length < required.length) {
    const spec = required[positionals.length]!;
    throw usageError(verb, `${spec.missing} ('kernel ${verb} ${required.map((r) => r.name).join(' ')}')`);
  }
  if (positionals.length > required.length) {
    const extra = positionals.slice(required.length);
    const takes = required.length === 0 ? 'takes no arguments' : `takes ${required.length === 1 ? 'one' : required.length}: ${required.map((r) => r.name).join(' ')}`;
    throw usageError(verb, `unexpected argument${extra.length > 1 ? 's' : ''} ${extra.map((a) => `'${a}'`).join(', ')} (${verb} ${takes})`);
  }
  return { values: values as ParsedArgs['values'], positionals };
}
