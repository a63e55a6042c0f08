// Release tarballs: packed reproducibly, unpacked defensively. Packing runs in the CLI's process;
// scanning and extracting run in the unpack worker (unpack-worker.ts), off the kernel's main
// thread, because inflating is slow and node-tar's inflating is synchronous.
//
// An archive is scanned in full before a single byte is written (tar-scan.ts reads every raw
// header, including those node-tar would skip without a word). Only then does node-tar extract
// the release's folder into a fresh staging folder, and every entry it meets must be the very
// entry the scan approved, in the same order: where two readers disagree, nothing more is written.

import { mkdir, open, type FileHandle } from 'node:fs/promises';
import { Readable, Transform } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { Unpack, create, type ReadEntry } from 'tar';
import { TheseusError, errorMessage, theseusError } from '../common/errors.ts';
import { faultAfterBytesActive, injectFault, injectFaultAfterBytes } from '../common/faults.ts';
import { MAX_EXTENDED_HEADER_BYTES, TarScanner, canonicalEntryPath, type TarEntry, type TarLimits } from './tar-scan.ts';

export { DEFAULT_TAR_LIMITS, type TarEntry, type TarLimits } from './tar-scan.ts';

/** Packs `files` (relative to `dir`, sorted) with fixed metadata, so equal inputs give equal bytes. */
export async function packTarball(dir: string, files: string[], outFile: string): Promise<void> {
  await create(
    { cwd: dir, file: outFile, gzip: { level: 6 }, portable: true, mtime: new Date(0), noDirRecurse: true },
    [...files].sort(),
  );
}

export type ArchiveFormat = 'gzip' | 'tar';

/**
 * What a file holds, by its first bytes (never by its name): a gzip stream, a plain tar (the
 * `ustar` magic at byte 257), or something else, said in words for the refusal.
 */
export async function sniffArchive(file: string): Promise<{ format: ArchiveFormat } | { other: string }> {
  const handle = await open(file, 'r');
  const head = Buffer.alloc(512);
  let length: number;
  try {
    ({ bytesRead: length } = await handle.read(head, 0, head.length, 0));
  } finally {
    await handle.close();
  }
  const starts = (...bytes: number[]) => length >= bytes.length && bytes.every((byte, i) => head[i] === byte);
  if (starts(0x1f, 0x8b)) return { format: 'gzip' };
  if (length === 512 && head.toString('latin1', 257, 262) === 'ustar') return { format: 'tar' };
  if (length === 0) return { other: 'the file is empty' };
  if (starts(0x28, 0xb5, 0x2f, 0xfd)) return { other: 'it is compressed with zstd; only gzip (.tar.gz) or none (.tar) is read' };
  if (starts(0x42, 0x5a, 0x68)) return { other: 'it is compressed with bzip2; only gzip (.tar.gz) or none (.tar) is read' };
  if (starts(0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00)) return { other: 'it is compressed with xz; only gzip (.tar.gz) or none (.tar) is read' };
  if (starts(0x50, 0x4b, 0x03, 0x04)) return { other: 'it is a zip archive; releases are tar archives' };
  return { other: 'it is neither a gzip stream nor a tar archive' };
}

/**
 * Reads every header of `archive` (open as `file`) and returns its entries, or throws the first
 * refusal. Stops reading at the refusal, so a bomb is not inflated past the header that gives it
 * away. The raw tar bytes are inflated with Node's zlib when the archive is gzip.
 */
export async function scanArchive(archive: string, file: FileHandle, format: ArchiveFormat, limits: TarLimits): Promise<TarEntry[]> {
  const scanner = new TarScanner(archive, limits);
  const read = readFromStart(file);
  const stream = format === 'gzip' ? read.pipe(createGunzip()) : read;
  // pipe() does not pass the file's read errors on: they must end the loop below, not go uncaught.
  if (stream !== read) read.on('error', (error) => stream.destroy(error));
  try {
    for await (const chunk of stream) scanner.push(chunk as Buffer);
  } catch (error) {
    if (error instanceof TheseusError) throw error;
    throw theseusError('E_TAR_CORRUPT', archive, errorMessage(error));
  } finally {
    stream.destroy();
    read.destroy();
  }
  return scanner.end();
}

/**
 * Extracts the entries of `archive` under `folder` (an archive path, e.g. releases/1.2.0) into
 * `dest`, a folder this creates and which must not exist. `scanned` is what scanArchive returned,
 * read from the same open `file` (so a file swapped between the two reads changes nothing):
 * node-tar must meet exactly these entries, in this order, or extraction stops.
 */
export async function extractScanned(archive: string, file: FileHandle, dest: string, scanned: readonly TarEntry[], folder: string): Promise<void> {
  await mkdir(dest, { mode: 0o755 });
  injectFault('unpack-write');
  let index = 0;
  let refusal: TheseusError | null = null;
  const offered = new WeakSet<ReadEntry>();
  const unpack = new Unpack({
    // Test-only: a disk that fills part-way through, after some files have landed.
    ...(faultAfterBytesActive('unpack-write') ? { transform: failingPartWay() } : {}),
    cwd: dest,
    strict: true,
    preservePaths: false,
    preserveOwner: false,
    maxMetaEntrySize: MAX_EXTENDED_HEADER_BYTES,
    filter: (path: string, entry: ReadEntry | unknown) => {
      const read = entry as ReadEntry;
      offered.add(read);
      const expected = scanned[index];
      index += 1;
      // node-tar reports an old-style file (typeflag NUL) as 'File', as the scan does.
      const actual = { path: canonicalEntryPath(path), type: read.type, size: read.size ?? 0 };
      if (!expected || expected.path !== actual.path || expected.type !== actual.type || expected.size !== actual.size) {
        stop(
          theseusError(
            'E_TAR_AMBIGUOUS',
            archive,
            `node-tar read entry ${index} as ${describe(actual)} where the scan read ${expected ? describe(expected) : 'no entry'}`,
          ),
        );
        return false;
      }
      if (actual.path !== folder && !actual.path.startsWith(`${folder}/`)) return false;
      // Modes come from us, not from the archive: no set-uid bit, nothing world-writable.
      read.mode = actual.type === 'Directory' ? 0o755 : 0o644;
      return true;
    },
  });
  const stop = (error: TheseusError) => {
    refusal ??= error;
    unpack.abort(error);
  };
  // Entries node-tar skips without asking the filter: the scan refused every such type, so one
  // reaching here means the two readers disagree.
  unpack.on('ignoredEntry', (entry: ReadEntry) => {
    if (!offered.has(entry)) stop(theseusError('E_TAR_AMBIGUOUS', archive, `node-tar skipped an entry '${entry.path}' of type ${entry.type} that the scan did not see`));
  });
  await new Promise<void>((resolve, reject) => {
    unpack.on('error', reject);
    unpack.on('close', () => resolve());
    const read = readFromStart(file);
    read.on('error', reject);
    read.pipe(unpack as unknown as NodeJS.WritableStream);
  }).catch((error: unknown) => {
    if (refusal !== null) throw refusal;
    // An archive node-tar cannot read after the scan read it whole: the readers disagree. Any
    // other failure (a full disk, a failing device) goes up as it is.
    const tarCode = (error as { tarCode?: unknown }).tarCode;
    if (typeof tarCode === 'string' && /^TAR_(?:BAD_ARCHIVE|ENTRY_INVALID|ENTRY_UNSUPPORTED)$/.test(tarCode)) {
      throw theseusError('E_TAR_AMBIGUOUS', archive, `node-tar could not read what the scan read (${errorMessage(error)})`);
    }
    throw error;
  });
  if (refusal !== null) throw refusal;
  if (index !== scanned.length) throw theseusError('E_TAR_AMBIGUOUS', archive, `node-tar met ${index} entries where the scan read ${scanned.length}`);
}

/**
 * Test-only (THESEUS_FAULTS=unpack-write-after:<bytes>): each file's bytes pass through a stream
 * that fails once that many bytes of all files have been written, as a full disk would.
 */
function failingPartWay(): (entry: ReadEntry) => ReadEntry {
  let written = 0;
  return () =>
    new Transform({
      transform(chunk: Buffer, _encoding, done) {
        try {
          injectFaultAfterBytes('unpack-write', written);
        } catch (error) {
          done(error as Error);
          return;
        }
        written += chunk.length;
        done(null, chunk);
      },
    }) as unknown as ReadEntry;
}

/**
 * The whole file from its first byte, read through the handle, which stays open for the next
 * read (a stream on a descriptor closes it when destroyed, whatever autoClose says).
 */
function readFromStart(file: FileHandle): Readable {
  return Readable.from(
    (async function* chunks() {
      for (let position = 0; ; ) {
        const buffer = Buffer.allocUnsafe(64 * 1024);
        const { bytesRead } = await file.read(buffer, 0, buffer.length, position);
        if (bytesRead === 0) return;
        position += bytesRead;
        yield buffer.subarray(0, bytesRead);
      }
    })(),
    { objectMode: false },
  );
}

function describe(entry: { path: string; type: string; size: number }): string {
  return `${entry.type} '${entry.path}' (${entry.size} bytes)`;
}
