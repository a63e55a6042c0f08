// A keyed store's copy from the old worker to the new one over their hand-off channel, both ends.
// The sending end runs in the old worker while it still serves: rounds of chunks between its own
// calls, each later round the keys written during the one before, at most a few chunks ahead of
// what the receiving end has applied. The receiving end runs in the new worker: it migrates each
// entry as it arrives and applies it to its store, then takes the snapshot that ends the hand-off.
// The message shapes are HandoffMessage in kernel/common/protocol.ts.

import type { MessagePort } from 'node:worker_threads';
import { theseusError } from '../common/errors.ts';
import { explainCloneFailure, findNonPlainData } from '../common/plain-data.ts';
import type { ControlRequests, HandoffMessage, StateSnapshot } from '../common/protocol.ts';
import { decodeServiceState, encodeState } from '../common/state-codec.ts';
import type { StoreKey } from '../service.ts';
import type { StoreChange, TrackedStore } from './keyed-store.ts';

export type EntryMigration = (value: unknown, key: StoreKey) => unknown;

/**
 * Chunks the old worker may have sent ahead of the new one. Without a bound, a new worker slower
 * than the old one (decoding costs more than encoding) would still be working through queued
 * chunks when the pause begins, and the pause would wait for it.
 */
const CHUNKS_AHEAD = 4;
/** How long the copy works before it lets the service's calls run (ms). */
const SLICE_MS = 4;
/**
 * Entries per chunk: small enough that encoding one (about a millisecond for a few hundred KB)
 * fits between two calls, large enough that the per-message cost stays small.
 */
const CHUNK_ENTRIES = 4096;

type Progress = ControlRequests['precopy']['response'];

/** The sending end, in the old worker: from `precopy` until the suspend sends the rest, or the copy ends. */
export class StoreCopy {
  readonly port: MessagePort;
  readonly #service: string;
  readonly #store: TrackedStore;
  /** The vsn the entries leave at, and their migration on the way (a downgrade's, in this newer code). */
  readonly #vsn: string;
  readonly #migrateEntry: EntryMigration | null;
  /** Chunks sent that the new worker has not yet said it applied. */
  #unapplied = 0;
  #onApplied: (() => void) | null = null;
  #ended = false;

  constructor(options: { service: string; store: TrackedStore; port: MessagePort; vsn: string; migrateEntry: EntryMigration | null; onClosed(): void }) {
    this.#service = options.service;
    this.#store = options.store;
    this.port = options.port;
    this.#vsn = options.vsn;
    this.#migrateEntry = options.migrateEntry;
    this.port.on('message', (message: HandoffMessage) => {
      if (message.kind !== 'applied') return;
      this.#unapplied--;
      this.#onApplied?.();
    });
    // The new worker ended (a roll-back): its end closed.
    this.port.once('close', () => {
      if (!this.#ended) options.onClosed();
    });
    this.#store.startTracking();
  }

  /** Round after round, until what is left is small, or the rounds stop shrinking; E_PRECOPY_ABORTED if the copy ends first. */
  async run({ maxRounds, smallEnough }: { maxRounds: number; smallEnough: number }): Promise<Progress> {
    const progress: Progress = { rounds: 0, entries: 0, bytes: 0, lastRound: 0 };
    // Round one sends every key in the Map's order, but not one (re)inserted since the copy began:
    // the next round puts those last, where the Map has them.
    let keys: Iterable<readonly [StoreKey, boolean]> = this.#keysNotInsertedSince();
    for (;;) {
      const sent = await this.#sendRound(keys);
      // The round counts once the new worker has it all: then what is left is only what was written since.
      await this.#caughtUp(0);
      if (this.#ended) throw theseusError('E_PRECOPY_ABORTED', this.#service);
      progress.rounds++;
      progress.entries += sent.entries;
      progress.bytes += sent.bytes;
      progress.lastRound = sent.entries;
      const next = this.#store.changedCount;
      // Small enough: the rest waits for the suspend, which sends it inside the pause. A round that
      // would be no smaller than the last does not converge (keys are written faster than a round
      // sends them): going on would only send more, so the pause takes what is left.
      if (next <= smallEnough || progress.rounds >= maxRounds || next >= sent.entries) return progress;
      keys = this.#store.takeChanged();
    }
  }

  /**
   * Whether the keys written since the last round are fewer than the store's entries: if not (a
   * sliding window written faster than a round), the whole store is the smaller message.
   */
  get restIsSmaller(): boolean {
    return this.#store.changedCount < this.#store.size;
  }

  /** In the pause: the keys written since the last round, as one chunk. */
  sendRest(): void {
    this.#sendChunk([...this.#store.takeChanged()]);
  }

  /** Stops tracking and waiting; the channel stays open for the caller to use or close. */
  end(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.port.removeAllListeners('message');
    this.#onApplied?.();
    this.#store.stopTracking();
  }

  *#keysNotInsertedSince(): Generator<readonly [StoreKey, boolean]> {
    for (const key of this.#store.keys()) if (!this.#store.insertedSinceTaken(key)) yield [key, false];
  }

  /** One round: the keys in chunks, each chunk between two of the service's own messages. */
  async #sendRound(keys: Iterable<readonly [StoreKey, boolean]>): Promise<{ entries: number; bytes: number }> {
    let entries = 0;
    let bytes = 0;
    let chunk: Array<readonly [StoreKey, boolean]> = [];
    const flush = () => {
      bytes += this.#sendChunk(chunk);
      entries += chunk.length;
      chunk = [];
    };
    let sliceStarted = performance.now();
    for (const key of keys) {
      chunk.push(key);
      if (chunk.length < CHUNK_ENTRIES) continue;
      flush();
      if (this.#unapplied < CHUNKS_AHEAD && performance.now() - sliceStarted < SLICE_MS) continue;
      // Let the service's calls run: the copy must not starve them; and let the new worker catch up.
      await this.#caughtUp(CHUNKS_AHEAD - 1);
      if (this.#ended) return { entries, bytes };
      sliceStarted = performance.now();
    }
    if (chunk.length > 0) flush();
    return { entries, bytes };
  }

  /** Resolves after a turn of the event loop, once at most `ahead` chunks wait in the new worker (or the copy ended). */
  async #caughtUp(ahead: number): Promise<void> {
    await new Promise<void>((resolve) => setImmediate(resolve));
    while (this.#unapplied > ahead && !this.#ended) {
      await new Promise<void>((resolve) => {
        this.#onApplied = resolve;
      });
      this.#onApplied = null;
    }
  }

  /** Sends the current value of each key (or its deletion) as one chunk; returns its size in bytes. */
  #sendChunk(keys: ReadonlyArray<readonly [StoreKey, boolean]>): number {
    const changes = this.#store.changesOf(keys);
    if (changes.length === 0) return 0;
    if (this.#migrateEntry) for (const change of changes) if (change.length > 1) change[1] = this.#migrateEntry(change[1], change[0]);
    const bytes = this.#encode(changes);
    const size = bytes.byteLength;
    const message: HandoffMessage = { kind: 'entries', vsn: this.#vsn, bytes };
    this.port.postMessage(message, [bytes.buffer as ArrayBuffer]);
    this.#unapplied++;
    return size;
  }

  /**
   * A value checked at its set() can still have been changed in place since (against the rules):
   * the error then names its key, as a whole snapshot's would.
   */
  #encode(changes: StoreChange[]): Uint8Array {
    try {
      return encodeState(changes);
    } catch (error) {
      for (const change of changes) {
        const problem = change.length > 1 ? findNonPlainData(change[1], `store.get(${JSON.stringify(change[0])})`) : null;
        if (problem !== null) throw theseusError('E_STATE_NOT_CLONEABLE', this.#service, 'at pre-copy', problem);
      }
      throw theseusError('E_STATE_NOT_CLONEABLE', this.#service, 'at pre-copy', explainCloneFailure(changes, 'entries', error));
    }
  }
}

/**
 * The receiving end, in the new worker: maybe rounds of the store first (each entry migrated up
 * by `upEntryFrom(vsn)` as it arrives, while the old code still serves), then the snapshot.
 * E_HANDOFF_CLOSED if the channel closes before the snapshot.
 */
export function receiveHandOff(options: {
  port: MessagePort;
  service: string;
  release: string;
  store: () => TrackedStore;
  upEntryFrom(vsn: string): EntryMigration | null;
}): Promise<{ snapshot: StateSnapshot; precopied: boolean; entryBytes: number }> {
  const { port, service } = options;
  let entryBytes = 0;
  const upEntry = new Map<string, EntryMigration | null>();
  return new Promise((resolve, reject) => {
    const fail = (error: unknown) => {
      port.removeAllListeners();
      // The old worker's copy stops when it sees the channel close.
      port.close();
      reject(error);
    };
    port.on('message', (message: HandoffMessage) => {
      if (message.kind === 'entries') {
        try {
          entryBytes += message.bytes.byteLength;
          if (!upEntry.has(message.vsn)) upEntry.set(message.vsn, options.upEntryFrom(message.vsn));
          const changes = decodeServiceState(message.bytes, service, 'at pre-copy') as StoreChange[];
          const migrateEntry = upEntry.get(message.vsn)!;
          if (migrateEntry) for (const change of changes) if (change.length > 1) change[1] = migrateEntry(change[1], change[0]);
          options.store().apply(changes);
          const applied: HandoffMessage = { kind: 'applied' };
          port.postMessage(applied);
        } catch (error) {
          fail(error);
        }
        return;
      }
      if (message.kind !== 'snapshot') return;
      port.removeAllListeners();
      port.close();
      resolve({ snapshot: message.snapshot, precopied: message.precopied === true, entryBytes });
    });
    port.once('close', () => {
      const error = theseusError('E_HANDOFF_CLOSED', service, options.release);
      error.phase = 'migrate';
      fail(error);
    });
  });
}
