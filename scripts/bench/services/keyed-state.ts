// The keyed store of the swap benchmark's keyed service (keyed-v1.ts / keyed-v2.ts): entries of
// about ENTRY_BYTES each (key and value as JSON), as many as make THESEUS_BENCH_STATE_BYTES, like a
// table of sessions or accounts. Every call rewrites one entry, so a swap's pre-copy always has
// keys written while it copies. `n` in the small state counts the calls, as in blob-state.ts.
import { defineService, type KeyedStore } from '../../../kernel/service.ts';

export const ENTRY_BYTES = 100;

export interface KeyedBenchState {
  n: number;
  entries: number;
}

function entry(i: number, n: number) {
  // About ENTRY_BYTES as JSON with its key: {"id":123456,"n":0,"name":"account-123456","note":"..."}
  return { id: i, n, name: `account-${i}`, note: 'abcdefghijklmnopqrstuvwxyz0123456789' };
}

export function fillStore(store: KeyedStore): KeyedBenchState {
  const bytes = Number(process.env.THESEUS_BENCH_STATE_BYTES ?? 1024 * 1024);
  const entries = Math.max(1, Math.round(bytes / ENTRY_BYTES));
  for (let i = 0; i < entries; i++) store.set(`a:${i}`, entry(i, 0));
  return { n: 0, entries };
}

/** Replies `<code>:<n>` and rewrites one entry. */
export function nextCall(code: string, state: KeyedBenchState, store: KeyedStore) {
  const i = state.n % state.entries;
  store.set(`a:${i}`, entry(i, state.n));
  return { reply: `${code}:${state.n}`, state: { ...state, n: state.n + 1 } };
}

export function info(code: string, store: KeyedStore) {
  return { reply: { shape: 'keyed' as const, bytes: store.size * ENTRY_BYTES, code } };
}

/** The service, its replies tagged with `code`: keyed-v1.ts and keyed-v2.ts differ only in that. */
export function keyedBenchService(code: 'v1' | 'v2') {
  return defineService({
    vsn: '1',
    keyed: true,
    init: ({ store }): KeyedBenchState => fillStore(store),
    calls: {
      next: ({ state, store }) => nextCall(code, state, store),
      info: ({ store }) => info(code, store),
    },
  });
}
