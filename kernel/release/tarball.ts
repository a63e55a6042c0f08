// Release tarballs: packed reproducibly, unpacked defensively. Runs in the CLI's process and the
// kernel's main thread.
//
// An archive is scanned in full before a single byte is written: every entry must be a plain file
// or folder with a relative path that stays inside the destination, and the sizes must stay under
// the limits (a small .tar.gz can declare gigabytes). Only then is it extracted, into a fresh
// staging folder, with the same rules enforced again as a second line of defence.

import { createReadStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { Parser, create, extract, type ReadEntry } from 'tar';
import { TheseusError, errorMessage, theseusError } from '../common/errors.ts';
import { injectFault } from '../common/faults.ts';

export interface TarLimits {
  /** Largest single file. */
  maxEntryBytes: number;
  /** Largest sum of all files. */
  maxTotalBytes: number;
  maxEntries: number;
}

export const DEFAULT_TAR_LIMITS: TarLimits = {
  maxEntryBytes: 512 * 1024 * 1024,
  maxTotalBytes: 1024 * 1024 * 1024,
  maxEntries: 20_000,
};

/** Packs `files` (relative to `dir`, sorted) with fixed metadata, so equal inputs give equal bytes. */
export async function packTarball(dir: string, files: string[], outFile: string): Promise<void> {
  await create(
    { cwd: dir, file: outFile, gzip: { level: 6 }, portable: true, mtime: new Date(0), noDirRecurse: true },
    [...files].sort(),
  );
}

export interface TarEntry {
  path: string;
  type: 'File' | 'Directory';
  size: number;
}

/** Reads every header of `archive` and returns its entries, or throws the first refusal. */
export async function scanTarball(archive: string, limits: TarLimits = DEFAULT_TAR_LIMITS): Promise<TarEntry[]> {
  const entries: TarEntry[] = [];
  let total = 0;
  let refusal: TheseusError | null = null;
  const parser = new Parser({
    strict: true,
    onReadEntry: (entry: ReadEntry) => {
      if (refusal === null) {
        refusal = checkEntry(archive, entry, limits);
        if (refusal === null) {
          total += entry.size ?? 0;
          if (entries.length + 1 > limits.maxEntries) refusal = theseusError('E_TAR_TOO_LARGE', archive, `the number of entries (${entries.length + 1})`, limits.maxEntries);
          else if (total > limits.maxTotalBytes) refusal = theseusError('E_TAR_TOO_LARGE', archive, 'the total unpacked size', limits.maxTotalBytes);
          else entries.push({ path: normalizeEntryPath(entry.path), type: entry.type === 'Directory' ? 'Directory' : 'File', size: entry.size ?? 0 });
        }
      }
      entry.resume();
      // Stop reading at the first refusal: a bomb is not inflated to the end.
      if (refusal !== null) parser.abort(refusal);
    },
  });
  try {
    await pipeline(createReadStream(archive), parser as unknown as NodeJS.WritableStream);
  } catch (error) {
    if (refusal !== null) throw refusal;
    throw theseusError('E_TAR_CORRUPT', archive, errorMessage(error));
  }
  if (refusal !== null) throw refusal;
  return entries;
}

/** Extracts a scanned archive into `dest` (which must be a fresh, empty folder). */
export async function extractTarball(archive: string, dest: string, limits: TarLimits = DEFAULT_TAR_LIMITS): Promise<TarEntry[]> {
  const entries = await scanTarball(archive, limits);
  injectFault('unpack-write');
  const allowed = new Set(entries.map((entry) => entry.path));
  let refusal: TheseusError | null = null;
  await extract({
    file: archive,
    cwd: dest,
    strict: true,
    preservePaths: false,
    noChmod: false,
    filter: (path, entry) => {
      const problem = checkEntry(archive, entry as ReadEntry, limits);
      if (problem) refusal ??= problem;
      return problem === null && allowed.has(normalizeEntryPath(path));
    },
  }).catch((error: unknown) => {
    throw theseusError('E_TAR_CORRUPT', archive, errorMessage(error));
  });
  if (refusal !== null) throw refusal;
  return entries;
}

/** Returns whether the archive starts with gzip's magic bytes (a tarball, not a folder). */
export async function looksLikeTarball(file: string): Promise<boolean> {
  const stream = createReadStream(file, { start: 0, end: 1 });
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  const head = Buffer.concat(chunks);
  return head.length === 2 && head[0] === 0x1f && head[1] === 0x8b;
}

function normalizeEntryPath(path: string): string {
  return path.replace(/^\.\//, '').replace(/\/+$/, '');
}

function checkEntry(archive: string, entry: ReadEntry, limits: TarLimits): TheseusError | null {
  const path = entry.path;
  switch (entry.type) {
    case 'SymbolicLink':
      return theseusError('E_TAR_SYMLINK', archive, path);
    case 'Link':
      return theseusError('E_TAR_HARDLINK', archive, path);
    case 'CharacterDevice':
    case 'BlockDevice':
    case 'FIFO':
      return theseusError('E_TAR_DEVICE', archive, path, entry.type);
    case 'File':
    case 'OldFile':
    case 'ContiguousFile':
    case 'Directory':
      break;
    default:
      return theseusError('E_TAR_DEVICE', archive, path, `'${entry.type}' entry`);
  }
  if (path.startsWith('/') || /^[A-Za-z]:[\\/]/.test(path)) return theseusError('E_TAR_ABSOLUTE', archive, path);
  if (path.split(/[\\/]/).includes('..')) return theseusError('E_TAR_TRAVERSAL', archive, path);
  if ((entry.size ?? 0) > limits.maxEntryBytes) return theseusError('E_TAR_TOO_LARGE', archive, `entry '${path}'`, limits.maxEntryBytes);
  return null;
}
