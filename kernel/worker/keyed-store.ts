// A keyed service's store (`keyed: true`, ctx.store), and what lets a swap copy it while the old
// code still serves: every key written since a moment is remembered (the dirty set), the way live
// migration of a VM tracks the pages written since each copy round. Runs in a service's worker.
//
// Why a store of its own rather than watching `state`: a handler returns a new `state` object,
// and finding what changed in it would mean walking it; a store sees each write as it happens.

import { theseusError } from '../common/errors.ts';
import { findNonPlainData } from '../common/plain-data.ts';
import type { KeyedStore, StoreKey } from '../service.ts';

/** A changed key in a copy round: its value, or no value when it was deleted. */
export type StoreChange = [key: StoreKey, value: unknown] | [key: StoreKey];

export class TrackedStore implements KeyedStore {
  readonly #service: string;
  #map = new Map<StoreKey, unknown>();
  /** Keys written since tracking began (or since the last `takeChanged`); null when no copy is under way. */
  #changed: Set<StoreKey> | null = null;
  /** Called on each write: the runtime counts it as a change of state (checkpoints, durability). */
  readonly #onWrite: () => void;

  constructor(service: string, onWrite: () => void) {
    this.#service = service;
    this.#onWrite = onWrite;
  }

  get(key: StoreKey): unknown {
    return this.#map.get(key);
  }

  has(key: StoreKey): boolean {
    return this.#map.has(key);
  }

  set(key: StoreKey, value: unknown): void {
    this.#checkKey(key);
    // Checked at the write, where the handler that made it is known, rather than for the whole
    // store at each snapshot: that walk would sit in the swap's pause and grow with the store.
    const problem = value === undefined ? 'the value is undefined (delete the key instead)' : findNonPlainData(value, `store.get(${JSON.stringify(key)})`);
    if (problem !== null) throw theseusError('E_STATE_NOT_CLONEABLE', this.#service, `at store.set(${JSON.stringify(key)})`, problem);
    this.#map.set(key, value);
    this.#changed?.add(key);
    this.#onWrite();
  }

  delete(key: StoreKey): boolean {
    const had = this.#map.delete(key);
    if (had) {
      this.#changed?.add(key);
      this.#onWrite();
    }
    return had;
  }

  get size(): number {
    return this.#map.size;
  }

  keys(): IterableIterator<StoreKey> {
    return this.#map.keys();
  }

  entries(): IterableIterator<[StoreKey, unknown]> {
    return this.#map.entries();
  }

  /** The Map itself, for a whole snapshot (structured clone writes a Map as it is). */
  get map(): Map<StoreKey, unknown> {
    return this.#map;
  }

  /** Replaces the whole contents (a snapshot adopted, or a failed durable write put back). */
  replace(map: Map<StoreKey, unknown>): void {
    this.#map = map;
  }

  /** Applies changes that came from another worker: no tracking, no write counted. */
  apply(changes: readonly StoreChange[]): void {
    for (const change of changes) {
      if (change.length === 2) this.#map.set(change[0], change[1]);
      else this.#map.delete(change[0]);
    }
  }

  // -- tracking, for a copy while serving --------------------------------------------------------

  get tracking(): boolean {
    return this.#changed !== null;
  }

  startTracking(): void {
    this.#changed = new Set();
  }

  stopTracking(): void {
    this.#changed = null;
  }

  get changedCount(): number {
    return this.#changed?.size ?? 0;
  }

  /** The keys written since the last call (or since tracking began), and a fresh set from now on. */
  takeChanged(): Set<StoreKey> {
    const changed = this.#changed ?? new Set<StoreKey>();
    this.#changed = new Set();
    return changed;
  }

  /** The current value of each key, or a deletion when it is gone. */
  changesOf(keys: Iterable<StoreKey>): StoreChange[] {
    const changes: StoreChange[] = [];
    for (const key of keys) changes.push(this.#map.has(key) ? [key, this.#map.get(key)] : [key]);
    return changes;
  }

  #checkKey(key: StoreKey): void {
    if (typeof key === 'string' || (typeof key === 'number' && Number.isFinite(key))) return;
    throw theseusError('E_STORE_BAD_KEY', this.#service, typeof key === 'number' ? String(key) : typeof key);
  }
}

/** What a keyed service's snapshot holds: its small state and every entry of its store. */
export interface KeyedSnapshot {
  readonly '~keyed': 1;
  state: unknown;
  entries: Map<StoreKey, unknown>;
}

/**
 * What a pre-copied swap's final snapshot holds: only the small state; the entries went before it
 * on the same channel, in rounds, the last round being the keys changed while it drained.
 */
export interface KeyedRest {
  readonly '~keyed': 'rest';
  state: unknown;
}

export function isKeyedSnapshot(value: unknown): value is KeyedSnapshot {
  return value !== null && typeof value === 'object' && (value as KeyedSnapshot)['~keyed'] === 1 && (value as KeyedSnapshot).entries instanceof Map;
}

export function isKeyedRest(value: unknown): value is KeyedRest {
  return value !== null && typeof value === 'object' && (value as KeyedRest)['~keyed'] === 'rest';
}
