// What a handler returned, read one way for every kind of service: a call must return
// { reply, state? }, a cast { state? } or nothing, and a reply must be able to cross to its
// caller's thread. A service's worker (service-runtime.ts) and a pool's threads (pool-entry.ts)
// both read results here, so the two never disagree on what is a bad result.

import { theseusError, type TheseusError } from '../common/errors.ts';
import { findNonPlainData } from '../common/plain-data.ts';

/** A call's result: its reply and next state (undefined: unchanged), or why it is refused. */
export function readCallResult(service: string, method: string, result: unknown): { reply: unknown; state: unknown } | { error: TheseusError } {
  if (result === null || typeof result !== 'object' || !('reply' in result)) {
    return { error: theseusError('E_BAD_HANDLER_RESULT', service, method, describeValue(result)) };
  }
  const { reply, state } = result as { reply: unknown; state?: unknown };
  return { reply, state };
}

/** A cast's result: its next state (undefined: unchanged), or why it is refused. */
export function readCastResult(service: string, method: string, result: unknown): { state: unknown } | { error: TheseusError } {
  if (result === undefined) return { state: undefined };
  if (result === null || typeof result !== 'object') return { error: theseusError('E_BAD_HANDLER_RESULT', service, method, describeValue(result)) };
  return { state: (result as { state?: unknown }).state };
}

/** Why a reply could not be sent to another thread, or null when it can. */
export function replyProblem(reply: unknown): string | null {
  if (reply !== null && typeof reply === 'object') return findNonPlainData(reply, 'reply');
  if (typeof reply === 'function' || typeof reply === 'symbol') return `the reply is a ${typeof reply}`;
  return null;
}

/** How a handler's bad result is described in E_BAD_HANDLER_RESULT. */
export function describeValue(value: unknown): string {
  if (value === undefined) return 'undefined';
  if (value === null) return 'null';
  if (typeof value === 'object') return `an object without 'reply' (keys: ${Object.keys(value).join(', ') || 'none'})`;
  return `a ${typeof value}`;
}
