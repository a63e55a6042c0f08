// Every lifecycle in Theseus (the kernel, a service host, a service's worker runtime, a pool
// generation, a hot swap, a release upgrade, the daemon, the HTTP front door) is a state
// machine whose allowed moves are one table next to its states. This is the one check they all
// make before they move, so a move the table does not list is never taken silently.
// Runs in any thread.

import { theseusError } from './errors.ts';

/** Each state and the states it may move to. */
export type TransitionTable<State extends string> = Readonly<Record<State, readonly State[]>>;

/**
 * Throws E_BAD_PHASE (a kernel bug, said as such) unless `table` lets `who` move from `from` to
 * `to`; returns `to`, for `this.#state = checkTransition(...)`.
 */
export function checkTransition<State extends string>(table: TransitionTable<State>, who: string, from: State, to: State): State {
  if (!table[from].includes(to)) throw theseusError('E_BAD_PHASE', `${who} cannot go from ${from} to ${to}`);
  return to;
}
