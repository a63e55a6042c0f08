// The state of the swap benchmark's service (blob-v1.ts / blob-v2.ts), sized on request.
//
// A service cannot read options, so scripts/bench.ts passes the wanted size and shape through the
// environment, which a worker copies from the main thread when it is created:
//   THESEUS_BENCH_STATE_BYTES  approximate size of the state in bytes (default 1024)
//   THESEUS_BENCH_STATE_SHAPE  'blob' (default) or 'objects'
//
// Two shapes, because a swap moves them very differently (v8.serialize, transfer, deserialize):
//  - 'blob':    { n, blob: Uint8Array } — one binary buffer of exactly that many bytes, like a
//               cached file, a bitmap or a serialized index. Its bytes live outside the JS heap and
//               serialize as one memcpy, so this is the cheapest state per byte.
//  - 'objects': { n, items: Item[] } — many small records (~80 bytes of JSON each) adding up to
//               about that many bytes of JSON, like a table of sessions or orders. Every record is
//               a separate heap object to walk, serialize and rebuild, so this is the dearest.
// `n` is a counter: each call replies with it and increments it, so the benchmark can check that
// no call was lost or repeated across swaps.

export interface Item {
  id: number;
  name: string;
  score: number;
  tags: string[];
  active: boolean;
}

export interface BlobState {
  shape: 'blob';
  n: number;
  blob: Uint8Array;
}

export interface ObjectsState {
  shape: 'objects';
  n: number;
  items: Item[];
}

export type BenchState = BlobState | ObjectsState;

const DEFAULT_BYTES = 1024;
/** Bytes written with a pattern before the rest is filled by doubling copies (fast, every page touched). */
const SEED_BYTES = 4096;

export function initialState(): BenchState {
  const raw = process.env.THESEUS_BENCH_STATE_BYTES;
  const bytes = raw === undefined ? DEFAULT_BYTES : Number(raw);
  if (!Number.isSafeInteger(bytes) || bytes < 0) {
    throw new Error(`THESEUS_BENCH_STATE_BYTES must be a byte count, got '${raw}'`);
  }
  const shape = process.env.THESEUS_BENCH_STATE_SHAPE ?? 'blob';
  if (shape !== 'blob' && shape !== 'objects') throw new Error(`THESEUS_BENCH_STATE_SHAPE must be 'blob' or 'objects', got '${shape}'`);
  return stateOfShape(shape, bytes);
}

/** A state of that shape and about that size; scripts/bench/state-codec.ts times the codecs on the same ones. */
export function stateOfShape(shape: BenchState['shape'], bytes: number): BenchState {
  return shape === 'blob' ? { shape, n: 0, blob: patternedBytes(bytes) } : { shape, n: 0, items: itemsOfJsonSize(bytes) };
}

/** The state's size as the benchmark defines it: the blob's bytes, or the items' JSON length. */
export function stateSize(state: BenchState): number {
  return state.shape === 'blob' ? state.blob.byteLength : JSON.stringify(state.items).length;
}

/** Non-zero, non-repeating-looking bytes, so no layer can cheat with zero pages or compression. */
function patternedBytes(bytes: number): Uint8Array {
  const blob = new Uint8Array(bytes);
  const seeded = Math.min(bytes, SEED_BYTES);
  for (let i = 0; i < seeded; i++) blob[i] = Math.imul(i + 1, 2654435761) >>> 24;
  for (let filled = seeded; filled < bytes; filled *= 2) {
    blob.copyWithin(filled, 0, Math.min(filled, bytes - filled));
  }
  return blob;
}

function itemsOfJsonSize(bytes: number): Item[] {
  const items: Item[] = [];
  let jsonBytes = 2; // the enclosing []
  for (let id = 0; jsonBytes < bytes; id++) {
    const item: Item = {
      id,
      name: `item-${id}`,
      score: Math.round(((id * 7919) % 10_000) / 7) / 100,
      tags: id % 3 === 0 ? ['hot', 'new'] : ['cold'],
      active: id % 2 === 0,
    };
    items.push(item);
    jsonBytes += JSON.stringify(item).length + 1; // + the comma
  }
  return items;
}
