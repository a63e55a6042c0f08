// Hand-written tar archives, byte by byte (no tool would make the hostile ones willingly). Apart
// from helpers.ts, which builds releases and loads the whole release tooling: the scanner's fast
// tests (and npm run mutate, which runs them once per mutant) load only this.

/** One header of a hand-written archive: any type flag, any path, any declared size. */
export interface RawHeader {
  path: string;
  /** The type flag byte, as a character ('0' file, '5' folder, 'S' GNU sparse, ...). */
  typeflag: string;
  /** Bytes after the header (padded to 512); its length is the declared size unless `size` says otherwise. */
  data?: Buffer;
  size?: number;
  linkpath?: string;
  /** Written into the POSIX prefix field (node-tar joins it in front of the name). */
  prefix?: string;
  /** 'gnu' writes GNU tar's magic ('ustar  \0'), 'posix' (default) POSIX's ('ustar\0' '00'). */
  magic?: 'posix' | 'gnu';
  /** PAX records, written as an 'x' header in front of this one. */
  pax?: Array<[key: string, value: string]>;
}

function octal(value: number, length: number): string {
  return `${value.toString(8).padStart(length - 1, '0')}\0`;
}

/** A 512-byte tar header with a correct checksum, written byte by byte. */
export function tarHeader(entry: RawHeader, size: number): Buffer {
  const block = Buffer.alloc(512);
  block.write(entry.path, 0, 100, 'utf8');
  block.write(octal(0o644, 8), 100, 'latin1');
  block.write(octal(0, 8), 108, 'latin1');
  block.write(octal(0, 8), 116, 'latin1');
  if (size < 8 ** 11) block.write(octal(size, 12), 124, 'latin1');
  else {
    // Base-256, as GNU tar writes sizes of 8 GiB and more.
    block[124] = 0x80;
    let rest = size;
    for (let i = 135; i > 124; i--) {
      block[i] = rest % 256;
      rest = Math.floor(rest / 256);
    }
  }
  block.write(octal(0, 12), 136, 'latin1');
  block.write(entry.typeflag, 156, 1, 'latin1');
  if (entry.linkpath) block.write(entry.linkpath, 157, 100, 'utf8');
  block.write(entry.magic === 'gnu' ? 'ustar  \0' : 'ustar\u000000', 257, 8, 'latin1');
  if (entry.prefix) block.write(entry.prefix, 345, 155, 'utf8');
  return sealHeader(block);
}

/**
 * Writes a header's checksum as node-tar and GNU tar do (six octal digits, NUL, space): the sum
 * of all 512 bytes with the checksum field counted as eight spaces. For a header edited by hand.
 */
export function sealHeader(block: Buffer): Buffer {
  block.write('        ', 148, 8, 'latin1');
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'latin1');
  return block;
}

/** PAX records as a PAX extended header's data: `<length> <key>=<value>\n` each. */
export function paxData(records: Array<[string, string]>): Buffer {
  return Buffer.concat(
    records.map(([key, value]) => {
      const body = ` ${key}=${value}\n`;
      let length = Buffer.byteLength(body);
      while (String(length).length + Buffer.byteLength(body) !== length) length = String(length).length + Buffer.byteLength(body);
      return Buffer.from(`${length}${body}`);
    }),
  );
}

export const padding = (length: number) => Buffer.alloc((512 - (length % 512)) % 512);

/** The raw (uncompressed) tar bytes of these headers, ended with two zero blocks. */
export function rawTar(entries: RawHeader[]): Buffer {
  const blocks: Buffer[] = [];
  for (const entry of entries) {
    if (entry.pax) {
      const records = paxData(entry.pax);
      blocks.push(tarHeader({ path: 'PaxHeaders/entry', typeflag: 'x' }, records.length), records, padding(records.length));
    }
    const data = entry.data ?? Buffer.alloc(0);
    blocks.push(tarHeader(entry, entry.size ?? data.length), data, padding(data.length));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}
