// How a service's state becomes bytes and back: the snapshot a swap moves, a checkpoint, the state
// a conversion migrates down, and the final state at stop all go through here, in the worker that
// holds the state. The kernel's main thread only reads the format's header (and converts
// checkpoints written by older kernels, see decodeLegacyState).
//
// The bytes are V8's ValueSerializer format as structured clone writes it. Node's v8.serialize
// (the DefaultSerializer) is not: it writes every typed array and DataView as a "host object", a
// copy of the view's own bytes. Views that shared an ArrayBuffer then arrive on separate ones, and
// v8.deserialize rebuilds each view over the one buffer holding the whole snapshot, so a 5-byte
// Uint8Array kept the whole snapshot alive. The base Serializer lets V8 write each ArrayBuffer once
// and each view as (buffer, offset, length); the base Deserializer gives every ArrayBuffer memory
// of its own. So a state arrives as structured clone would deliver it, sharing and layout included.
//
// What cannot be written here is refused earlier, by the plain-data check (plain-data.ts); an
// encoding that fails all the same is still reported as the state's fault, with a path when one
// can be found, never as an internal error.

import { DefaultDeserializer, Deserializer, Serializer } from 'node:v8';
import { theseusError } from './errors.ts';
import type { UpgradePhase } from './phases.ts';
import { explainCloneFailure, findNonPlainData } from './plain-data.ts';

/** The encoding this kernel writes: named in checkpoint headers. */
export const STATE_ENCODING = 'v8-structured-clone';
/** Checkpoints written before the header named an encoding hold Node's v8.serialize bytes. */
export const LEGACY_STATE_ENCODING = 'node-v8-serialize';

export function encodeState(state: unknown): Uint8Array {
  const serializer = new Serializer();
  serializer.writeHeader();
  serializer.writeValue(state);
  const buffer = serializer.releaseBuffer();
  // The released Buffer owns its whole ArrayBuffer, so the bytes can be transferred, not copied.
  return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
}

export function decodeState(bytes: Uint8Array): unknown {
  const deserializer = new Deserializer(bytes);
  deserializer.readHeader();
  return deserializer.readValue();
}

/** Refuses, with E_STATE_NOT_CLONEABLE and the path, a state that is not plain data (plain-data.ts). */
export function assertPlainState(state: unknown, service: string, where: string, phase?: UpgradePhase): void {
  const problem = findNonPlainData(state);
  if (problem === null) return;
  const error = theseusError('E_STATE_NOT_CLONEABLE', service, where, problem);
  if (phase) error.phase = phase;
  throw error;
}

/** `encodeState`, with a failure reported as E_STATE_NOT_CLONEABLE naming the path when one is found. */
export function encodeServiceState(state: unknown, service: string, where: string, phase?: UpgradePhase): Uint8Array {
  try {
    return encodeState(state);
  } catch (error) {
    const failure = theseusError('E_STATE_NOT_CLONEABLE', service, where, explainCloneFailure(state, 'state', error));
    if (phase) failure.phase = phase;
    throw failure;
  }
}

/** `decodeState`, with a failure reported as E_STATE_UNREADABLE. */
export function decodeServiceState(bytes: Uint8Array, service: string, where: string): unknown {
  try {
    return decodeState(bytes);
  } catch (error) {
    throw theseusError('E_STATE_UNREADABLE', service, where, error instanceof Error ? error.message : String(error));
  }
}

/**
 * The version of V8's serialization format that `bytes` were written in, or null when they do not
 * start with a format header. V8 reads every older version, but refuses a newer one.
 */
export function stateFormatVersion(bytes: Uint8Array): number | null {
  if (bytes[0] !== 0xff) return null;
  let version = 0;
  for (let i = 1, shift = 0; i < bytes.length && shift < 35; i++, shift += 7) {
    version += (bytes[i]! & 0x7f) * 2 ** shift;
    if ((bytes[i]! & 0x80) === 0) return version;
  }
  return null;
}

/** The newest serialization format this Node.js reads: the one it writes. */
export const currentStateFormatVersion: number = stateFormatVersion(encodeState(null))!;

/**
 * Reads bytes written by Node's v8.serialize (checkpoints of older kernels). Node's own reader
 * would rebuild each typed array over the buffer holding the whole file; each one gets a copy of
 * its own bytes here, so no small array keeps the file's memory alive.
 */
export function decodeLegacyState(bytes: Uint8Array): unknown {
  const deserializer = new LegacyDeserializer(bytes);
  deserializer.readHeader();
  return deserializer.readValue();
}

class LegacyDeserializer extends DefaultDeserializer {
  _readHostObject(): unknown {
    const read = (DefaultDeserializer.prototype as unknown as { _readHostObject(this: DefaultDeserializer): ArrayBufferView })._readHostObject;
    const view = read.call(this);
    const own = view.buffer.slice(view.byteOffset, view.byteOffset + view.byteLength) as ArrayBuffer;
    if (Buffer.isBuffer(view)) return Buffer.from(own);
    if (view instanceof DataView) return new DataView(own);
    const TypedArray = view.constructor as new (buffer: ArrayBuffer) => ArrayBufferView;
    return new TypedArray(own);
  }
}
