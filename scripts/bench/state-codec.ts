// What the state codec costs: encode + decode of the same states with the codec a swap used before
// (Node's v8.serialize / v8.deserialize) and the one it uses now (V8's own Serializer and
// Deserializer, as structured clone; kernel/common/state-codec.ts), measured in the same run,
// interleaved, on the swap benchmark's states (scripts/bench/services/blob-state.ts). Beside them,
// the plain-data check that runs before every snapshot (kernel/common/plain-data.ts).
//
// The new codec gives every ArrayBuffer memory of its own when it decodes, where v8.deserialize
// left each typed array inside the snapshot's buffer: for a big blob that is one more copy, and it
// is what keeps a small array from holding a whole snapshot alive.

import { deserialize, serialize } from 'node:v8';
import { findNonPlainData } from '../../kernel/common/plain-data.ts';
import { decodeState, encodeState } from '../../kernel/common/state-codec.ts';
import { stateOfShape, type BenchState } from './services/blob-state.ts';

export interface CodecTiming {
  encodeMs: number;
  decodeMs: number;
  totalMs: number;
  bytes: number;
}

export interface StateCodecRow {
  state: string;
  /** Node's v8.serialize / v8.deserialize: the codec before issue 12. */
  old: CodecTiming;
  /** kernel/common/state-codec.ts. */
  new: CodecTiming;
  /** new.totalMs / old.totalMs. */
  ratio: number;
  /** One run of the plain-data check over the state. */
  checkMs: number;
  rounds: number;
}

interface Codec {
  encode(state: unknown): Uint8Array;
  decode(bytes: Uint8Array): unknown;
}

const oldCodec: Codec = { encode: (state) => serialize(state), decode: (bytes) => deserialize(bytes) };
const newCodec: Codec = { encode: encodeState, decode: decodeState };

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

function timeOnce(codec: Codec, state: unknown, into: { encode: number[]; decode: number[] }): number {
  const started = performance.now();
  const bytes = codec.encode(state);
  const encoded = performance.now();
  const decoded = codec.decode(bytes);
  into.encode.push(encoded - started);
  into.decode.push(performance.now() - encoded);
  // Read the result, so neither side can be optimized into doing less.
  if (decoded === undefined) throw new Error('the codec lost the state');
  return bytes.byteLength;
}

function summary(times: { encode: number[]; decode: number[] }, bytes: number): CodecTiming {
  const encodeMs = median(times.encode);
  const decodeMs = median(times.decode);
  return { encodeMs: round(encodeMs), decodeMs: round(decodeMs), totalMs: round(encodeMs + decodeMs), bytes };
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

/** Times both codecs and the check on one state, alternating which codec goes first. */
function measure(label: string, state: BenchState, rounds: number): StateCodecRow {
  const old = { encode: [] as number[], decode: [] as number[] };
  const fresh = { encode: [] as number[], decode: [] as number[] };
  const check: number[] = [];
  // One untimed round each, so both are compiled and the heap has grown to fit.
  timeOnce(oldCodec, state, { encode: [], decode: [] });
  timeOnce(newCodec, state, { encode: [], decode: [] });
  let oldBytes = 0;
  let newBytes = 0;
  for (let round = 0; round < rounds; round++) {
    if (round % 2 === 0) {
      oldBytes = timeOnce(oldCodec, state, old);
      newBytes = timeOnce(newCodec, state, fresh);
    } else {
      newBytes = timeOnce(newCodec, state, fresh);
      oldBytes = timeOnce(oldCodec, state, old);
    }
    const started = performance.now();
    if (findNonPlainData(state) !== null) throw new Error(`the bench state ${label} is not plain data`);
    check.push(performance.now() - started);
  }
  const oldTiming = summary(old, oldBytes);
  const newTiming = summary(fresh, newBytes);
  return { state: label, old: oldTiming, new: newTiming, ratio: round(newTiming.totalMs / oldTiming.totalMs), checkMs: round(median(check)), rounds };
}

export function benchStateCodec(options: { quick: boolean }): StateCodecRow[] {
  const MB = 1024 * 1024;
  const rows: StateCodecRow[] = [];
  rows.push(measure('1MB blob', stateOfShape('blob', MB), options.quick ? 9 : 31));
  rows.push(measure('1MB objects', stateOfShape('objects', MB), options.quick ? 9 : 31));
  rows.push(measure('100MB blob', stateOfShape('blob', 100 * MB), options.quick ? 3 : 7));
  return rows;
}
