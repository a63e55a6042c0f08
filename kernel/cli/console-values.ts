// What the console does with values: errors shown as one line with their code, and arguments
// checked to be JSON before they are sent (the control socket speaks JSON, and a value that would
// change on the way, a Date, a Map, undefined, is refused here with the reason rather than altered).

import { TheseusError, errorMessage } from '../common/errors.ts';

/**
 * The error a call rejects with in the console: its stack is the one line
 * `Error [CODE]: message`, so the REPL prints just that ("Uncaught Error [E_...]: ..."), never a
 * stack trace from the console's own code. `code` stays available to `try`/`catch`.
 */
export function consoleError(error: unknown): Error {
  const code = error instanceof TheseusError ? error.code : (error as { code?: unknown })?.code;
  const message = errorMessage(error).replace(/\s*\n\s*/g, ' ');
  const oneLine = new Error(message);
  // Not enumerable, so inspect() does not add a `{ code }` block under the line.
  Object.defineProperty(oneLine, 'code', { value: code, enumerable: false, writable: true, configurable: true });
  oneLine.stack = typeof code === 'string' ? `Error [${code}]: ${message}` : `Error: ${message}`;
  return oneLine;
}

/** A failure in one line: `Error [CODE]: message`. */
export function describeFailure(error: unknown): string {
  return consoleError(error).stack!;
}

/** Why a value would not reach the service unchanged as JSON, or null if it would. */
export function notJson(value: unknown, seen = new Set<object>()): string | null {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return null;
    case 'number':
      return Number.isFinite(value) ? null : `${value} is not a JSON number`;
    case 'object': {
      if (value === null) return null;
      if (seen.has(value)) return 'the arguments hold a cycle';
      seen.add(value);
      // Plain objects from any realm: the REPL's context has an Object.prototype of its own.
      const prototype = Object.getPrototypeOf(value) as object | null;
      if (!Array.isArray(value) && prototype !== null && Object.getPrototypeOf(prototype) !== null) {
        return `${withArticle((value as object).constructor?.name || 'class instance')} is not JSON`;
      }
      for (const item of Object.values(value)) {
        const reason = notJson(item, seen);
        if (reason) return reason;
      }
      seen.delete(value);
      return null;
    }
    default:
      return value === undefined ? 'undefined is not JSON' : `${withArticle(typeof value)} is not JSON`;
  }
}

function withArticle(noun: string): string {
  return `${/^[aeiou]/i.test(noun) ? 'an' : 'a'} ${noun}`;
}
