// Reads every 512-byte header of a tar stream, before anything is extracted. Runs in the unpack
// worker (unpack-worker.ts), never on the kernel's main thread.
//
// node-tar hides some headers from its callers: entry types it does not know (GNU sparse `S`,
// volume labels `V`, ...) are skipped without a callback, and PAX and long-name headers are
// applied without one. Their data is still inflated, and it counted against no limit. So this
// scanner reads the raw headers itself, and refuses, at the header and before its data is read:
//
//   - every type but plain files (`0`, NUL), folders (`5`), PAX extended headers (`x`) and GNU
//     long names (`L`): links, devices, sparse files, global headers, volume labels, ...
//   - PAX records other than the few a release archive uses (path, size, times, owner, mode);
//   - paths that are absolute, climb out with `..`, or are not normalized relative paths;
//   - more entries, larger entries or more bytes in all (extension data and zero padding
//     included) than the limits;
//   - anything two tar readers could read differently: a bad checksum, a field with bytes after
//     its terminating NUL, a folder with a body, a duplicate path, a lone zero block, data after
//     the end-of-archive marker.
//
// Then node-tar extracts, and tarball.ts checks that it saw the very same entries in the same
// order; the first difference stops it.

import { theseusError, type TheseusError } from '../common/errors.ts';
import { releasePathProblem } from './release-paths.ts';

export interface TarLimits {
  /** Largest single entry, extension headers included. */
  maxEntryBytes: number;
  /** Largest sum of all entries' data, extension headers included. */
  maxTotalBytes: number;
  /** Most headers, extension headers included. */
  maxEntries: number;
}

export const DEFAULT_TAR_LIMITS: TarLimits = {
  maxEntryBytes: 512 * 1024 * 1024,
  maxTotalBytes: 1024 * 1024 * 1024,
  maxEntries: 20_000,
};

/** A plain file or folder of the archive, as the scan read it. */
export interface TarEntry {
  /** Relative, without a leading `./` or a trailing `/`; '' for the archive's root folder. */
  path: string;
  type: 'File' | 'Directory';
  size: number;
}

const BLOCK = 512;
/** node-tar silently ignores a PAX or long-name header larger than this (it would not apply it). */
export const MAX_EXTENDED_HEADER_BYTES = 1024 * 1024;
/** Zero padding allowed after the end-of-archive marker (GNU tar pads to 10 KiB records). */
const MAX_TRAILING_BYTES = 1024 * 1024;

/** Every header type a release archive may hold. */
const ENTRY_TYPES: ReadonlyMap<string, 'File' | 'Directory' | 'pax' | 'longname'> = new Map([
  ['0', 'File'],
  ['', 'File'],
  ['5', 'Directory'],
  ['x', 'pax'],
  ['L', 'longname'],
] as const);

/** What a refused type is, for the message. */
const REFUSED_TYPES: ReadonlyMap<string, string> = new Map([
  ['1', 'a hard link'],
  ['2', 'a symbolic link'],
  ['3', 'a character device'],
  ['4', 'a block device'],
  ['6', 'a FIFO'],
  ['7', 'a contiguous file'],
  ['g', 'a PAX global header'],
  ['X', 'an old Solaris extended header'],
  ['K', 'a GNU long link name'],
  ['N', 'an old GNU long name'],
  ['S', 'a GNU sparse file'],
  ['V', 'a tape volume label'],
  ['M', 'a GNU multi-volume continuation'],
  ['D', 'a GNU dump folder'],
  ['A', 'a Solaris ACL'],
  ['I', 'an inode-only entry'],
]);

/** PAX records a release archive may carry (node-tar and GNU tar write these); any other is refused. */
const PAX_KEYS: ReadonlyMap<string, RegExp> = new Map([
  ['path', /^/],
  ['size', /^\d{1,16}$/],
  ['mtime', /^-?\d{1,20}(?:\.\d{1,20})?$/],
  ['atime', /^-?\d{1,20}(?:\.\d{1,20})?$/],
  ['ctime', /^-?\d{1,20}(?:\.\d{1,20})?$/],
  ['uid', /^\d{1,16}$/],
  ['gid', /^\d{1,16}$/],
  ['mode', /^\d{1,16}$/],
  ['uname', /^/],
  ['gname', /^/],
]);

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

/** The refusal for a header of a type releases may not hold, with the code the type has. */
export function refusedTypeError(archive: string, path: string, typeflag: string): TheseusError {
  switch (typeflag) {
    case '1':
      return theseusError('E_TAR_HARDLINK', archive, path);
    case '2':
      return theseusError('E_TAR_SYMLINK', archive, path);
    case '3':
    case '4':
    case '6':
      return theseusError('E_TAR_DEVICE', archive, path, REFUSED_TYPES.get(typeflag)!.replace(/^an? /, ''));
    default:
      return theseusError('E_TAR_ENTRY_TYPE', archive, path, REFUSED_TYPES.get(typeflag) ?? `of an unknown type (typeflag ${JSON.stringify(typeflag)})`);
  }
}

/** `path` as the scan and the extraction both compare it: no leading `./`, no trailing `/`. */
export function canonicalEntryPath(path: string): string {
  const trimmed = path.replace(/^(?:\.\/)+/, '');
  return trimmed === '.' ? '' : trimmed.replace(/\/+$/, '');
}

type State = { kind: 'header' } | { kind: 'data'; dataLeft: number; paddingLeft: number; collect: Buffer[] | null; meta: 'pax' | 'longname' | null; name: string } | { kind: 'end' };

/**
 * Incremental: push() the raw (inflated) tar bytes as they come, then end(). Each throws the
 * first refusal as a coded error, at the header that causes it, so a bomb's data is never read.
 */
export class TarScanner {
  readonly entries: TarEntry[] = [];
  #archive: string;
  #limits: TarLimits;
  #state: State = { kind: 'header' };
  /** A header split across chunks. */
  #partial: Buffer[] = [];
  #partialBytes = 0;
  #headers = 0;
  #totalBytes = 0;
  #bytesRead = 0;
  #zeroBlocks = 0;
  #trailingBytes = 0;
  /** PAX records and GNU long names waiting for the entry they describe (last one wins, as in node-tar). */
  #pending: Map<string, string> | null = null;
  #seen = new Map<string, 'File' | 'Directory'>();
  #folders = new Set<string>();

  constructor(archive: string, limits: TarLimits) {
    this.#archive = archive;
    this.#limits = limits;
  }

  push(chunk: Buffer): void {
    this.#bytesRead += chunk.length;
    let offset = 0;
    while (offset < chunk.length) {
      const state = this.#state;
      if (state.kind === 'end') {
        this.#trailing(chunk.subarray(offset));
        return;
      }
      if (state.kind === 'data') {
        offset += this.#data(state, chunk, offset);
        continue;
      }
      const wanted = BLOCK - this.#partialBytes;
      if (this.#partialBytes === 0 && chunk.length - offset >= BLOCK) {
        this.#header(chunk.subarray(offset, offset + BLOCK), this.#bytesRead - chunk.length + offset);
        offset += BLOCK;
        continue;
      }
      const piece = chunk.subarray(offset, offset + wanted);
      this.#partial.push(Buffer.from(piece));
      this.#partialBytes += piece.length;
      offset += piece.length;
      if (this.#partialBytes === BLOCK) {
        const block = Buffer.concat(this.#partial);
        this.#partial = [];
        this.#partialBytes = 0;
        this.#header(block, this.#bytesRead - chunk.length + offset - BLOCK);
      }
    }
  }

  /** The archive's entries, once the whole stream was read; throws if it ended early. */
  end(): TarEntry[] {
    if (this.#state.kind !== 'end') throw this.#corrupt('it ends before its end-of-archive marker (truncated)');
    return this.entries;
  }

  #corrupt(reason: string): TheseusError {
    return theseusError('E_TAR_CORRUPT', this.#archive, reason);
  }

  #ambiguous(reason: string): TheseusError {
    return theseusError('E_TAR_AMBIGUOUS', this.#archive, reason);
  }

  #data(state: Extract<State, { kind: 'data' }>, chunk: Buffer, offset: number): number {
    const available = chunk.length - offset;
    if (state.dataLeft > 0) {
      const take = Math.min(state.dataLeft, available);
      state.collect?.push(Buffer.from(chunk.subarray(offset, offset + take)));
      state.dataLeft -= take;
      if (state.dataLeft === 0 && state.paddingLeft === 0) this.#endOfData(state);
      return take;
    }
    const take = Math.min(state.paddingLeft, available);
    state.paddingLeft -= take;
    if (state.paddingLeft === 0) this.#endOfData(state);
    return take;
  }

  #endOfData(state: Extract<State, { kind: 'data' }>): void {
    this.#state = { kind: 'header' };
    if (state.meta === null || state.collect === null) return;
    const data = Buffer.concat(state.collect);
    if (state.meta === 'longname') this.#longName(data, state.name);
    else this.#paxRecords(data, state.name);
  }

  #trailing(rest: Buffer): void {
    this.#trailingBytes += rest.length;
    if (this.#trailingBytes > MAX_TRAILING_BYTES) throw theseusError('E_TAR_TOO_LARGE', this.#archive, 'the padding after the end-of-archive marker', MAX_TRAILING_BYTES);
    if (rest.some((byte) => byte !== 0)) throw this.#ambiguous('it holds data after its end-of-archive marker');
  }

  #header(block: Buffer, position: number): void {
    if (block.every((byte) => byte === 0)) {
      this.#zeroBlocks += 1;
      if (this.#zeroBlocks === 2) {
        if (this.#pending !== null) throw this.#ambiguous('an extended header describes no entry (the archive ends after it)');
        this.#state = { kind: 'end' };
      }
      return;
    }
    // node-tar reads on after one zero block, other readers stop there.
    if (this.#zeroBlocks > 0) throw this.#ambiguous(`a lone zero block comes before the header at byte ${position}`);
    this.#headers += 1;
    if (this.#headers > this.#limits.maxEntries) throw theseusError('E_TAR_TOO_LARGE', this.#archive, `the number of entries (${this.#headers})`, this.#limits.maxEntries);
    if (!checksumValid(block)) throw this.#corrupt(`the header at byte ${position} has a bad checksum`);
    const magic = block.toString('latin1', 257, 265);
    const posix = magic === 'ustar\u000000';
    if (!posix && magic !== 'ustar  \u0000') throw this.#corrupt(`the header at byte ${position} is neither a POSIX nor a GNU tar header`);
    const typeflag = block[156] === 0 ? '' : String.fromCharCode(block[156]!);
    const name = this.#field(block, 0, 100, position);
    // As node-tar reads it: in a POSIX header the prefix field extends the name.
    let headerPath = name;
    let prefix = '';
    if (posix) {
      prefix = block[475] !== 0 ? this.#field(block, 345, 155, position) : this.#field(block, 345, 130, position);
      if (block[475] !== 0 || prefix !== '') headerPath = `${prefix}/${name}`;
    }
    const kind = ENTRY_TYPES.get(typeflag);
    const pending = this.#pending;
    const extendedPath = kind === 'File' || kind === 'Directory' ? pending?.get('path') : undefined;
    const path = extendedPath ?? headerPath;
    if (kind === undefined) throw refusedTypeError(this.#archive, path, typeflag);
    const declared = this.#size(block, position);
    if (kind === 'pax' || kind === 'longname') {
      if (declared > MAX_EXTENDED_HEADER_BYTES) throw theseusError('E_TAR_TOO_LARGE', this.#archive, `the extended header '${name}'`, MAX_EXTENDED_HEADER_BYTES);
      this.#count(declared, `extended header '${name}'`);
      this.#state = { kind: 'data', dataLeft: declared, paddingLeft: padding(declared), collect: [], meta: kind, name };
      if (declared === 0) this.#state = { kind: 'header' };
      return;
    }
    this.#pending = null;
    if (extendedPath !== undefined && (block[475] !== 0 || prefix !== '')) {
      throw this.#ambiguous(`entry '${extendedPath}' has both an extended path and a prefix in its header`);
    }
    const pendingSize = pending?.get('size');
    const size = pendingSize === undefined ? declared : Number(pendingSize);
    if (kind === 'Directory' && size !== 0) throw this.#ambiguous(`the folder '${path}' declares a body of ${size} bytes`);
    if (kind === 'File' && (path.endsWith('/') || name.endsWith('/'))) throw this.#ambiguous(`the file '${path}' has a folder's name (a trailing slash)`);
    const canonical = this.#checkPath(path, kind);
    this.#count(size, `entry '${path}'`);
    this.#remember(canonical, kind);
    this.entries.push({ path: canonical, type: kind, size });
    if (size > 0) this.#state = { kind: 'data', dataLeft: size, paddingLeft: padding(size), collect: null, meta: null, name };
  }

  /** A text field: UTF-8 up to its NUL, and only NULs after it (node-tar would read on past a newline). */
  #field(block: Buffer, start: number, length: number, position: number): string {
    const field = block.subarray(start, start + length);
    const end = field.indexOf(0);
    if (end === -1) return field.toString('utf8');
    if (field.subarray(end).some((byte) => byte !== 0)) throw this.#ambiguous(`the header at byte ${position} has bytes after the end of a text field`);
    return field.toString('utf8', 0, end);
  }

  #size(block: Buffer, position: number): number {
    const field = block.subarray(124, 136);
    let size: number;
    if (field[0]! & 0x80) {
      // Base-256, for sizes of 8 GiB and more; a negative size (0xff) is never valid.
      if (field[0] !== 0x80) throw this.#corrupt(`the header at byte ${position} has a negative size`);
      size = 0;
      for (const byte of field.subarray(1)) size = size * 256 + byte;
    } else {
      const text = field.toString('latin1').replace(/\0[\s\S]*$/, '').trim();
      if (!/^[0-7]{1,12}$/.test(text)) throw this.#corrupt(`the header at byte ${position} has an unreadable size`);
      size = Number.parseInt(text, 8);
    }
    if (!Number.isSafeInteger(size)) throw theseusError('E_TAR_TOO_LARGE', this.#archive, `the entry at byte ${position}`, this.#limits.maxEntryBytes);
    return size;
  }

  /** Every entry's data counts, whatever its type: a skipped body is inflated all the same. */
  #count(size: number, what: string): void {
    if (size > this.#limits.maxEntryBytes) throw theseusError('E_TAR_TOO_LARGE', this.#archive, what, this.#limits.maxEntryBytes);
    this.#totalBytes += size;
    if (this.#totalBytes > this.#limits.maxTotalBytes) throw theseusError('E_TAR_TOO_LARGE', this.#archive, 'the total unpacked size', this.#limits.maxTotalBytes);
  }

  #checkPath(path: string, kind: 'File' | 'Directory'): string {
    if (path.startsWith('/') || /^[A-Za-z]:[\\/]/.test(path)) throw theseusError('E_TAR_ABSOLUTE', this.#archive, path);
    if (path.split(/[\\/]/).includes('..')) throw theseusError('E_TAR_TRAVERSAL', this.#archive, path);
    const canonical = canonicalEntryPath(path);
    if (canonical === '') {
      if (kind === 'Directory') return canonical;
      throw theseusError('E_TAR_BAD_PATH', this.#archive, path, 'is empty');
    }
    const problem = releasePathProblem(canonical);
    if (problem !== null) throw theseusError('E_TAR_BAD_PATH', this.#archive, path, problem);
    return canonical;
  }

  /** Refuses a path seen twice, or a file that another entry needs as its folder. */
  #remember(path: string, kind: 'File' | 'Directory'): void {
    if (this.#seen.has(path)) throw this.#ambiguous(`it holds '${path || '.'}' twice`);
    if (kind === 'File' && this.#folders.has(path)) throw this.#ambiguous(`'${path}' is a file and the folder of another entry`);
    this.#seen.set(path, kind);
    if (path === '') return;
    const segments = path.split('/');
    for (let i = 1; i < segments.length; i++) {
      const folder = segments.slice(0, i).join('/');
      if (this.#seen.get(folder) === 'File') throw this.#ambiguous(`'${folder}' is a file and the folder of '${path}'`);
      this.#folders.add(folder);
    }
  }

  #longName(data: Buffer, name: string): void {
    const end = data.indexOf(0);
    if (end !== -1 && data.subarray(end).some((byte) => byte !== 0)) throw this.#ambiguous(`the long name in '${name}' has bytes after its end`);
    const path = data.toString('utf8', 0, end === -1 ? data.length : end);
    if (CONTROL.test(path)) throw theseusError('E_TAR_EXTENDED_HEADER', this.#archive, path, 'holds a control character in its path');
    this.#pending ??= new Map();
    this.#pending.set('path', path);
  }

  /** PAX records, `<length> <key>=<value>\n` each, read strictly: what node-tar would skip is refused. */
  #paxRecords(data: Buffer, name: string): void {
    const records = new Map<string, string>();
    let offset = 0;
    while (offset < data.length) {
      const space = data.indexOf(0x20, offset);
      const lengthText = space === -1 ? '' : data.toString('latin1', offset, space);
      const length = /^[1-9]\d{0,6}$/.test(lengthText) ? Number(lengthText) : NaN;
      const end = offset + length;
      if (!(end <= data.length) || data[end - 1] !== 0x0a) throw theseusError('E_TAR_EXTENDED_HEADER', this.#archive, name, `has a malformed record at byte ${offset}`);
      const record = data.toString('utf8', space + 1, end - 1);
      const equals = record.indexOf('=');
      const key = record.slice(0, equals);
      const value = record.slice(equals + 1);
      if (equals <= 0 || CONTROL.test(record) || Buffer.byteLength(`${lengthText} ${record}\n`) !== length) {
        throw theseusError('E_TAR_EXTENDED_HEADER', this.#archive, name, `has a malformed record at byte ${offset}`);
      }
      if (key.startsWith('GNU.sparse.')) throw theseusError('E_TAR_ENTRY_TYPE', this.#archive, records.get('path') ?? name, 'a GNU sparse file (PAX GNU.sparse.* records)');
      const allowed = PAX_KEYS.get(key);
      if (allowed === undefined) throw theseusError('E_TAR_EXTENDED_HEADER', this.#archive, name, `holds the record '${key}', which release archives do not use`);
      if (!allowed.test(value)) throw theseusError('E_TAR_EXTENDED_HEADER', this.#archive, name, `has an unreadable '${key}' (${JSON.stringify(value.slice(0, 40))})`);
      records.set(key, value);
      offset = end;
    }
    this.#pending ??= new Map();
    for (const [key, value] of records) this.#pending.set(key, value);
  }
}

function padding(size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}

/** The header checksum: the sum of its bytes, the checksum field counted as eight spaces. */
function checksumValid(block: Buffer): boolean {
  const text = block.toString('latin1', 148, 156).replace(/\0[\s\S]*$/, '').trim();
  if (!/^[0-7]{1,7}$/.test(text)) return false;
  let sum = 8 * 0x20;
  for (let i = 0; i < BLOCK; i++) if (i < 148 || i >= 156) sum += block[i]!;
  return sum === Number.parseInt(text, 8);
}
