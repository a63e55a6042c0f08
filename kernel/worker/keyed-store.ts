// A keyed service's store (`keyed: true`, ctx.store), and what lets a swap copy it while the old
// code still serves: every key written since a moment is remembered (the changed set), the way
// live migration of a VM tracks the pages written since each copy round. Runs in a service's worker.
//
// Why a store of its own rather than watching `state`: a handler returns a new `state` object,
// and finding what changed in it would mean walking it; a store sees each write as it happens.

import { theseusError } from '../common/errors.ts';
import { findNonPlainData } from '../common/plain-data.ts';
import type { KeyedStore, StoreKey } from '../service.ts';

/**
 * A changed key in a copy round: its value, or no value when it was deleted. A third element (1)
 * says the key was (re)inserted since the copy began: the receiver puts it last, where the
 * sender's Map has it, instead of leaving it where an older copy of it was.
 */
export type StoreChange = [key: StoreKey, value: unknown] | [key: StoreKey, value: unknown, inserted: 1] | [key: StoreKey];

export class TrackedStore implements KeyedStore {
  readonly #service: string;
  #map = new Map<StoreKey, unknown>();
  /**
   * Keys written since tracking began (or since the last `takeChanged`), in the order the sender's
   * Map has the inserted ones, each with whether it was (re)inserted; null when no copy is under way.
   */
  #changed: Map<StoreKey, boolean> | null = null;
  /** Called on each write: the runtime counts it as a change of state (checkpoints, durability). */
  readonly #onWrite: () => void;

  constructor(service: string, onWrite: () => void) {
    this.#service = service;
    this.#onWrite = onWrite;
  }

  get(key: StoreKey): unknown {
    const value = this.#map.get(key);
    // A value that can be changed in place may be, though the rules say not to: while a copy runs,
    // it is sent again, so that a change made without set() is not left behind by the swap.
    if (this.#changed !== null && value !== null && typeof value === 'object') this.#touched(key);
    return value;
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
    const inserted = !this.#map.has(key);
    this.#map.set(key, value);
    if (this.#changed !== null) {
      if (inserted) this.#inserted(key);
      else this.#touched(key);
    }
    this.#onWrite();
  }

  delete(key: StoreKey): boolean {
    const had = this.#map.delete(key);
    if (had) {
      // Marked as inserted: if it comes back, it comes back last.
      if (this.#changed !== null) this.#inserted(key);
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

  *entries(): IterableIterator<[StoreKey, unknown]> {
    for (const entry of this.#map.entries()) {
      // As for get(): a value handed out while a copy runs may be changed in place.
      if (this.#changed !== null && entry[1] !== null && typeof entry[1] === 'object') this.#touched(entry[0]);
      yield entry;
    }
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
      if (change.length === 1) this.#map.delete(change[0]);
      else {
        // Re-inserted at the sender: last here too.
        if (change.length === 3) this.#map.delete(change[0]);
        this.#map.set(change[0], change[1]);
      }
    }
  }

  // -- tracking, for a copy while serving --------------------------------------------------------

  startTracking(): void {
    this.#changed = new Map();
  }

  stopTracking(): void {
    this.#changed = null;
  }

  get changedCount(): number {
    return this.#changed?.size ?? 0;
  }

  /** Whether the key was (re)inserted since the last `takeChanged`: the next round sends it, in its place. */
  insertedSinceTaken(key: StoreKey): boolean {
    return this.#changed?.get(key) === true;
  }

  /** The keys written since the last call (or since tracking began), and a fresh set from now on. */
  takeChanged(): Map<StoreKey, boolean> {
    const changed = this.#changed ?? new Map<StoreKey, boolean>();
    this.#changed = new Map();
    return changed;
  }

  /** The current value of each key (or its deletion), marked when it was (re)inserted. */
  changesOf(keys: ReadonlyArray<readonly [StoreKey, boolean]>): StoreChange[] {
    const changes: StoreChange[] = [];
    for (const [key, inserted] of keys) {
      if (!this.#map.has(key)) changes.push([key]);
      else changes.push(inserted ? [key, this.#map.get(key), 1] : [key, this.#map.get(key)]);
    }
    return changes;
  }

  #touched(key: StoreKey): void {
    if (!this.#changed!.has(key)) this.#changed!.set(key, false);
  }

  /** Moved to the end of the changed set, as the Map moved the key to its end. */
  #inserted(key: StoreKey): void {
    this.#changed!.delete(key);
    this.#changed!.set(key, true);
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
