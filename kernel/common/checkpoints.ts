// Durable state: each service's last state on disk, as var/state/<service>.ckpt. Written by the
// kernel's main thread (durability 'periodic'), or by the service's own worker, which holds its
// replies back until the state is written (durability 'reply'); one writer at a time per file.
//
// A checkpoint is written atomically (temporary file, fsync, rename, fsync of the folder), so a
// SIGKILL at any moment leaves either the previous checkpoint or the new one, never a torn file.
// It records its service, release and state vsn, and the sha256 of the state bytes: a file that
// does not check out is refused, never silently replaced by a fresh init().
//
// Layout: "THESEUS-CHECKPOINT 1\n", one line of JSON header, "\n", then the state bytes. The header's
// `encoding` names how the bytes were written (state-codec.ts): 'v8-structured-clone' now; a header
// without one was written by an older kernel with Node's v8.serialize, which is read and converted
// here (the marker stays 1, because an older kernel reads the new bytes correctly: Node's
// v8.deserialize reads V8's own encoding of typed arrays too).

import { createHash } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { theseusError } from '../common/errors.ts';
import { findNonPlainData } from '../common/plain-data.ts';
import type { StateSnapshot } from '../common/protocol.ts';
import { LEGACY_STATE_ENCODING, STATE_ENCODING, currentStateFormatVersion, decodeLegacyState, encodeState, stateFormatVersion } from '../common/state-codec.ts';
import { writeFileAtomic } from '../release/fs-atomic.ts';

const MAGIC = 'THESEUS-CHECKPOINT 1\n';

export interface CheckpointHeader {
  service: string;
  release: string;
  vsn: string;
  sha256: string;
  size: number;
  /** ISO time it was taken. */
  at: string;
  /** How the state bytes are encoded; absent in checkpoints of older kernels (LEGACY_STATE_ENCODING). */
  encoding?: string;
}

export interface Checkpoint {
  header: CheckpointHeader;
  snapshot: StateSnapshot;
}

export function checkpointFile(stateDir: string, service: string): string {
  return join(stateDir, `${service}.ckpt`);
}

/** A checkpoint's bytes: the marker and header line, then the state bytes (kept apart, not copied). */
export function encodeCheckpoint(service: string, release: string, snapshot: StateSnapshot): { header: CheckpointHeader; head: Uint8Array; body: Uint8Array } {
  const header: CheckpointHeader = {
    service,
    release,
    vsn: snapshot.vsn,
    sha256: createHash('sha256').update(snapshot.bytes).digest('hex'),
    size: snapshot.bytes.byteLength,
    at: new Date().toISOString(),
    // Snapshots come from this kernel's workers, which all encode with state-codec.ts.
    encoding: STATE_ENCODING,
  };
  return { header, head: Buffer.from(`${MAGIC}${JSON.stringify(header)}\n`, 'utf8'), body: snapshot.bytes };
}

export async function writeCheckpoint(stateDir: string, service: string, release: string, snapshot: StateSnapshot): Promise<CheckpointHeader> {
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const { header, head, body } = encodeCheckpoint(service, release, snapshot);
  await writeFileAtomic(checkpointFile(stateDir, service), Buffer.concat([head, body]), 0o600);
  return header;
}

/** The service's checkpoint, null when it has none; throws E_CHECKPOINT_CORRUPT when it does not check out. */
export async function readCheckpoint(stateDir: string, service: string): Promise<Checkpoint | null> {
  const file = checkpointFile(stateDir, service);
  let contents: Buffer;
  try {
    contents = await readFile(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw theseusError('E_CHECKPOINT_CORRUPT', file, (error as Error).message);
  }
  if (!contents.subarray(0, MAGIC.length).equals(Buffer.from(MAGIC))) throw theseusError('E_CHECKPOINT_CORRUPT', file, 'it does not start with the checkpoint marker');
  const headerEnd = contents.indexOf(0x0a, MAGIC.length);
  if (headerEnd < 0) throw theseusError('E_CHECKPOINT_CORRUPT', file, 'its header is cut short');
  let header: CheckpointHeader;
  try {
    header = JSON.parse(contents.subarray(MAGIC.length, headerEnd).toString('utf8')) as CheckpointHeader;
  } catch {
    throw theseusError('E_CHECKPOINT_CORRUPT', file, 'its header is not JSON');
  }
  const bytes = contents.subarray(headerEnd + 1);
  if (header.service !== service) throw theseusError('E_CHECKPOINT_CORRUPT', file, `it belongs to service '${header.service}'`);
  if (bytes.byteLength !== header.size) throw theseusError('E_CHECKPOINT_CORRUPT', file, `it holds ${bytes.byteLength} state bytes, its header says ${header.size}`);
  const actual = createHash('sha256').update(bytes).digest('hex');
  if (actual !== header.sha256) throw theseusError('E_CHECKPOINT_CORRUPT', file, 'its state bytes do not match their sha256');
  const encoding = header.encoding ?? LEGACY_STATE_ENCODING;
  if (encoding === LEGACY_STATE_ENCODING) return { header, snapshot: { vsn: header.vsn, bytes: fromLegacyBytes(file, service, bytes) } };
  if (encoding !== STATE_ENCODING) {
    throw theseusError('E_CHECKPOINT_INCOMPATIBLE', service, `its state is encoded as '${encoding}', which this kernel cannot read (it reads '${STATE_ENCODING}'); run the newer kernel that wrote it`);
  }
  const version = stateFormatVersion(bytes);
  if (version === null) throw theseusError('E_CHECKPOINT_CORRUPT', file, 'its state bytes do not start with a serialization header');
  if (version > currentStateFormatVersion) {
    throw theseusError('E_CHECKPOINT_INCOMPATIBLE', service, `its state was written by a newer Node.js (serialization format ${version}; this one reads up to ${currentStateFormatVersion}); run a Node.js at least as new`);
  }
  // A copy with its own ArrayBuffer, so it can be transferred to a worker.
  const owned = new Uint8Array(bytes.byteLength);
  owned.set(bytes);
  return { header, snapshot: { vsn: header.vsn, bytes: owned } };
}

/**
 * An older kernel's checkpoint, re-encoded as this kernel's workers read state. Decoded here,
 * once, in the main thread; refused when its state breaks today's plain-data rule (a Buffer, an
 * Error with fields of its own), which the older kernel let through.
 */
function fromLegacyBytes(file: string, service: string, bytes: Uint8Array): Uint8Array {
  let state: unknown;
  try {
    state = decodeLegacyState(bytes);
  } catch (error) {
    throw theseusError('E_CHECKPOINT_INCOMPATIBLE', service, `its state, written by an older kernel, cannot be decoded: ${(error as Error).message}`);
  }
  const problem = findNonPlainData(state);
  if (problem !== null) throw theseusError('E_CHECKPOINT_NOT_PLAIN', file, problem);
  return encodeState(state);
}
