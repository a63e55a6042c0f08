// The tar scanner (kernel/release/tar-scan.ts) on its own, in this process: what it reads from
// raw headers, where its limits lie (one byte under is read, one byte over is refused), which
// refusal each malformed header gets, and that the way the bytes are cut into chunks changes
// nothing. tar-headers.test.ts drives the same scanner through the installer and its worker; this
// file is the fast one, which `npm run mutate -- tar-scan` runs once per mutant.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { Header } from 'tar';
import { DEFAULT_TAR_LIMITS, MAX_EXTENDED_HEADER_BYTES, TarScanner, canonicalEntryPath, refusedTypeError, type TarEntry, type TarLimits } from '../../kernel/release/tar-scan.ts';
import { padding, paxData, rawTar, sealHeader, tarHeader, type RawHeader } from './raw-tar.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const END = Buffer.alloc(1024);

/** Scans `raw` pushed in pieces of `cut` bytes (whole when absent); the entries, or the refusal. */
function scan(raw: Buffer, limits: TarLimits = DEFAULT_TAR_LIMITS, cut?: number[]): TarEntry[] | { code: string; message: string } {
  const scanner = new TarScanner('test.tar', limits);
  try {
    let at = 0;
    for (const size of cut ?? []) {
      scanner.push(raw.subarray(at, at + size));
      at += size;
    }
    if (at < raw.length) scanner.push(raw.subarray(at));
    return scanner.end();
  } catch (error) {
    const { code, message } = error as { code: string; message: string };
    assert.equal(typeof code, 'string', `not a coded refusal: ${message}`);
    return { code, message };
  }
}

function entries(raw: Buffer, limits?: TarLimits): TarEntry[] {
  const result = scan(raw, limits);
  assert.ok(Array.isArray(result), `refused: ${JSON.stringify(result)}`);
  return result;
}

function refusal(raw: Buffer, limits?: TarLimits): { code: string; message: string } {
  const result = scan(raw, limits);
  assert.ok(!Array.isArray(result), `accepted: ${JSON.stringify(result)}`);
  return result;
}

const file = (path: string, data: Buffer | string = 'x', extra: Partial<RawHeader> = {}): RawHeader => ({ path, typeflag: '0', data: Buffer.from(data), ...extra });
const folder = (path: string, extra: Partial<RawHeader> = {}): RawHeader => ({ path, typeflag: '5', ...extra });
/** A header block whose fields are then edited by hand, and sealed again with a right checksum. */
function edited(entry: RawHeader, size: number, edit: (block: Buffer) => void): Buffer {
  const block = tarHeader(entry, size);
  edit(block);
  return sealHeader(block);
}
/** A header followed by its data and padding. */
const withData = (header: Buffer, data: Buffer) => Buffer.concat([header, data, padding(data.length)]);

test('entries are read with their canonical paths, types and sizes; data and padding of every size are skipped exactly', () => {
  const sizes = [0, 1, 511, 512, 513, 1024, 1537];
  const raw = rawTar([
    folder('./'),
    folder('./releases/'),
    folder('releases/1.0.0//'),
    ...sizes.map((size) => file(`releases/1.0.0/f${size}`, Buffer.alloc(size, 'a'))),
    { path: 'releases/1.0.0/old-style', typeflag: '\0', data: Buffer.from('v7') },
  ]);
  assert.deepEqual(entries(raw), [
    { path: '', type: 'Directory', size: 0 },
    { path: 'releases', type: 'Directory', size: 0 },
    { path: 'releases/1.0.0', type: 'Directory', size: 0 },
    ...sizes.map((size) => ({ path: `releases/1.0.0/f${size}`, type: 'File', size })),
    { path: 'releases/1.0.0/old-style', type: 'File', size: 2 },
  ]);
});

test('an archive holding nothing but its end-of-archive marker has no entries', () => {
  assert.deepEqual(entries(END), []);
});

test('the way the bytes are cut into chunks changes neither the entries nor the refusal', () => {
  const accepted = rawTar([
    folder('releases/'),
    file('releases/a', Buffer.alloc(700, 'a'), { pax: [['mtime', '1.5'], ['path', 'releases/from-pax']] }),
    { path: '././@LongLink', typeflag: 'L', data: Buffer.from(`releases/${'long/'.repeat(30)}name\0`) },
    file('placeholder', 'long'),
    file('releases/b', Buffer.alloc(512, 'b')),
  ]);
  const expected = entries(accepted);
  assert.equal(expected.length, 4);
  assert.equal(expected[1]!.path, 'releases/from-pax');
  assert.equal(expected[2]!.path, `releases/${'long/'.repeat(30)}name`);
  // The same archive with a bad checksum on its last header (byte 3072): the refusal names it.
  const refused = Buffer.from(accepted);
  refused[3072 + 148] = refused[3072 + 148]! ^ 1;
  const refusedWhole = refusal(refused);
  assert.equal(refusedWhole.code, 'E_TAR_CORRUPT');
  assert.match(refusedWhole.message, /header at byte 3072 has a bad checksum/);
  const cuts = fc.array(fc.oneof(fc.integer({ min: 1, max: 16 }), fc.integer({ min: 500, max: 1100 })), { maxLength: 40 });
  fc.assert(
    fc.property(cuts, (cut) => {
      assert.deepEqual(scan(accepted, DEFAULT_TAR_LIMITS, cut), expected);
      assert.deepEqual(scan(refused, DEFAULT_TAR_LIMITS, cut), refusedWhole);
    }),
    { numRuns: 50 },
  );
});

test('the end of the archive: two zero blocks, then only zero padding up to 1 MiB', () => {
  const one = rawTar([file('a')]);
  assert.deepEqual(entries(Buffer.concat([one, Buffer.alloc(MiB)])).map((entry) => entry.path), ['a'], 'GNU tar pads to whole records');
  // One byte more is refused, whether the padding comes with the marker or in pieces after it.
  const overPadded = Buffer.concat([one, Buffer.alloc(MiB + 1)]);
  for (const cut of [[], [one.length - 10], [one.length, MiB / 2, MiB / 2]]) {
    assert.equal((scan(overPadded, DEFAULT_TAR_LIMITS, cut) as { code?: string }).code, 'E_TAR_TOO_LARGE', `cut at ${cut.join(', ')}`);
  }
  const dataAfter = Buffer.concat([one, Buffer.alloc(MiB / 2)]);
  dataAfter[dataAfter.length - 1] = 1;
  assert.equal(refusal(dataAfter).code, 'E_TAR_AMBIGUOUS', 'a byte of data after the marker');
  assert.equal(refusal(Buffer.concat([one, rawTar([file('hidden')])])).code, 'E_TAR_AMBIGUOUS', 'a whole entry after the marker');
  // Truncated: no marker, half a marker, or a header cut short.
  const header = tarHeader(file('a'), 1);
  for (const [name, raw] of [
    ['no marker', withData(header, Buffer.from('x'))],
    ['one zero block', Buffer.concat([withData(header, Buffer.from('x')), Buffer.alloc(512)])],
    ['data cut short', header],
    ['a header cut short', header.subarray(0, 300)],
    ['nothing at all', Buffer.alloc(0)],
  ] as const) {
    const result = refusal(raw);
    assert.equal(result.code, 'E_TAR_CORRUPT', name);
    assert.match(result.message, /truncated/, name);
  }
  // One zero block, then a header: node-tar reads on, other readers stop at the zero block.
  const lone = refusal(Buffer.concat([withData(header, Buffer.from('x')), Buffer.alloc(512), rawTar([file('b')])]));
  assert.equal(lone.code, 'E_TAR_AMBIGUOUS');
  assert.match(lone.message, /lone zero block comes before the header at byte 1536/);
  // An extended header that describes no entry.
  for (const meta of [{ path: 'PaxHeaders/x', typeflag: 'x', data: paxData([['path', 'a']]) }, { path: '././@LongLink', typeflag: 'L', data: Buffer.from('a\0') }]) {
    assert.equal(refusal(rawTar([meta])).code, 'E_TAR_AMBIGUOUS', `a lone '${meta.typeflag}' header`);
  }
});

test('the entry limit counts every header, extension headers included; at the limit the archive is read', () => {
  const limits = { ...DEFAULT_TAR_LIMITS, maxEntries: 4 };
  const withPax = (path: string) => file(path, 'x', { pax: [['mtime', '0']] });
  assert.equal(entries(rawTar([withPax('a'), withPax('b')]), limits).length, 2, '4 headers, limit 4');
  const over = refusal(rawTar([withPax('a'), withPax('b'), folder('c')]), limits);
  assert.equal(over.code, 'E_TAR_TOO_LARGE');
  assert.match(over.message, /number of entries \(5\)/);
});

test('a refused size is refused at its header, before any of its data is read (a bomb is never inflated)', () => {
  for (const [what, header, limits] of [
    ['a 2 GiB file', tarHeader(file('bomb'), 2048 * MiB), DEFAULT_TAR_LIMITS],
    ['an entry over a small limit', tarHeader(file('bomb'), 64 * KiB + 1), { ...DEFAULT_TAR_LIMITS, maxEntryBytes: 64 * KiB }],
    ['an extended header over 1 MiB', tarHeader({ path: 'PaxHeaders/x', typeflag: 'x' }, MAX_EXTENDED_HEADER_BYTES + 1), DEFAULT_TAR_LIMITS],
    ['a long name over 1 MiB', tarHeader({ path: '././@LongLink', typeflag: 'L' }, MAX_EXTENDED_HEADER_BYTES + 1), DEFAULT_TAR_LIMITS],
  ] as const) {
    const scanner = new TarScanner('test.tar', limits);
    assert.throws(() => scanner.push(header), { code: 'E_TAR_TOO_LARGE' }, what);
  }
});

test('size limits: an entry or a total of exactly the limit is read, one byte more is refused; extension data counts', () => {
  const limits: TarLimits = { maxEntryBytes: 4 * KiB, maxTotalBytes: 10 * KiB, maxEntries: 100 };
  assert.equal(entries(rawTar([file('a', Buffer.alloc(4 * KiB))]), limits)[0]!.size, 4 * KiB);
  assert.equal(refusal(rawTar([file('a', Buffer.alloc(4 * KiB + 1))]), limits).code, 'E_TAR_TOO_LARGE');
  const parts = (last: number) => rawTar([file('a', Buffer.alloc(4 * KiB)), file('b', Buffer.alloc(4 * KiB)), file('c', Buffer.alloc(last))]);
  assert.equal(entries(parts(2 * KiB), limits).length, 3);
  const total = refusal(parts(2 * KiB + 1), limits);
  assert.equal(total.code, 'E_TAR_TOO_LARGE');
  assert.match(total.message, /total unpacked size/);
  // A PAX header's data counts against both limits, as an entry of its own.
  const pax = paxData([['uname', 'u'.repeat(4 * KiB - 12)]]);
  assert.equal(pax.length, 4 * KiB);
  assert.equal(entries(rawTar([file('a', Buffer.alloc(0), { pax: [['uname', 'u'.repeat(4 * KiB - 12)]] })]), limits).length, 1);
  assert.equal(refusal(rawTar([file('a', Buffer.alloc(0), { pax: [['uname', 'u'.repeat(4 * KiB - 11)]] })]), limits).code, 'E_TAR_TOO_LARGE');
  const paxTotal = refusal(rawTar([file('a', Buffer.alloc(4 * KiB)), file('b', Buffer.alloc(3 * KiB), { pax: [['uname', 'u'.repeat(3 * KiB)]] })]), limits);
  assert.match(paxTotal.message, /total unpacked size/);
});

test('an extended header of exactly 1 MiB is read, one byte more is refused whatever the limits', () => {
  const generous: TarLimits = { maxEntryBytes: 8 * MiB, maxTotalBytes: 16 * MiB, maxEntries: 100 };
  const value = (length: number) => 'u'.repeat(length - 15);
  assert.equal(paxData([['uname', value(MAX_EXTENDED_HEADER_BYTES)]]).length, MAX_EXTENDED_HEADER_BYTES);
  assert.equal(entries(rawTar([file('a', 'x', { pax: [['uname', value(MAX_EXTENDED_HEADER_BYTES)]] })]), generous).length, 1);
  const over = refusal(rawTar([file('a', 'x', { pax: [['uname', value(MAX_EXTENDED_HEADER_BYTES + 1)]] })]), generous);
  assert.equal(over.code, 'E_TAR_TOO_LARGE');
  assert.match(over.message, /extended header 'PaxHeaders\/entry'/);
});

test('sizes: octal as tar tools write it, base-256 (GNU, 8 GiB and more), and the unreadable ones', () => {
  const data = Buffer.alloc(1000, 'd');
  const sized = (field: (block: Buffer) => void) => Buffer.concat([withData(edited(file('a'), 0, field), data), END]);
  const writeSize = (text: string) => (block: Buffer) => block.fill(0, 124, 136).write(text, 124, 'latin1');
  for (const text of ['00000001750\0', '1750', ' 1750 ', '   1750\0', '00000001750 ']) {
    assert.deepEqual(entries(sized(writeSize(text))), [{ path: 'a', type: 'File', size: 1000 }], JSON.stringify(text));
  }
  const base256 = (block: Buffer) => {
    block.fill(0, 124, 136);
    block[124] = 0x80;
    block.writeUInt16BE(1000, 134);
  };
  assert.deepEqual(entries(sized(base256)), [{ path: 'a', type: 'File', size: 1000 }]);
  for (const [name, field, code] of [
    ['a negative base-256 size', (block: Buffer) => block.fill(0xff, 124, 136), 'E_TAR_CORRUPT'],
    ['a base-256 size past 2^53', (block: Buffer) => block.fill(0x80, 124, 125).fill(0xff, 125, 136), 'E_TAR_TOO_LARGE'],
    ['an empty size', writeSize(''), 'E_TAR_CORRUPT'],
    ['a size with a non-octal digit', writeSize('00000001758'), 'E_TAR_CORRUPT'],
    ['a size with text after it', writeSize('1750x'), 'E_TAR_CORRUPT'],
    ['a size with text before it', writeSize('x1750'), 'E_TAR_CORRUPT'],
  ] as const) {
    assert.equal(refusal(sized(field)).code, code, name);
  }
});

test('checksums: as POSIX, GNU and node-tar write them; any other sum, or an unreadable field, is refused', () => {
  const checksum = (text: string) => (block: Buffer) => {
    const sum = [...block].reduce((total, byte, i) => total + (i >= 148 && i < 156 ? 0x20 : byte), 0);
    block.write(text.replace('SUM', sum.toString(8)).padEnd(8, '\0'), 148, 8, 'latin1');
  };
  const archive = (block: Buffer) => Buffer.concat([block, Buffer.alloc(512, 'x'), END]);
  const unsealed = (text: string) => {
    const block = tarHeader(file('a'), 1);
    checksum(text)(block);
    return archive(block);
  };
  for (const text of ['0SUM\0 ', '00SUM\0', 'SUM ', ' SUM']) assert.equal(entries(unsealed(text)).length, 1, JSON.stringify(text));
  const sum = Number.parseInt(tarHeader(file('a'), 1).toString('latin1', 148, 154), 8);
  for (const text of [(sum + 1).toString(8), (sum - 1).toString(8), (sum - 8 * 0x20).toString(8), '', 'zz', '9'.repeat(7), `${sum.toString(8)}x`, `x${sum.toString(8)}`]) {
    const block = tarHeader(file('a'), 1);
    block.write(`${text}\0`.padEnd(8, '\0'), 148, 8, 'latin1');
    assert.equal(refusal(archive(block)).code, 'E_TAR_CORRUPT', JSON.stringify(text));
  }
});

test('only POSIX and GNU headers are read; a GNU header has no prefix field', () => {
  const magic = (text: string) => (block: Buffer) => block.write(text, 257, 8, 'latin1');
  const archive = (block: Buffer) => Buffer.concat([block, END]);
  assert.equal(entries(archive(edited(folder('a'), 0, magic('ustar  \0'))))[0]!.path, 'a');
  for (const text of ['\0\0\0\0\0\0\0\0', 'ustar\u0000  ', 'ustar\u000001', 'ustarxx\0']) {
    const result = refusal(archive(edited(folder('a'), 0, magic(text))));
    assert.equal(result.code, 'E_TAR_CORRUPT', JSON.stringify(text));
    assert.match(result.message, /neither a POSIX nor a GNU tar header/);
  }
  // GNU tar keeps access and change times where POSIX has the prefix: not part of the path.
  const gnu = edited(folder('a', { magic: 'gnu' }), 0, (block) => block.write('14707041025\0' + '14707041025\0', 345, 'latin1'));
  assert.equal(entries(archive(gnu))[0]!.path, 'a');
});

test("every header's path is the one node-tar reads: prefix fields of 155 and of 130 bytes, names that fill their field", () => {
  const agree = (block: Buffer) => {
    const read = entries(Buffer.concat([block, END]));
    assert.equal(read.length, 1);
    assert.equal(read[0]!.path, canonicalEntryPath(new Header(block).path!));
    return read[0]!.path;
  };
  assert.equal(agree(tarHeader(folder('b', { prefix: 'releases/1.0.0' }), 0)), 'releases/1.0.0/b');
  // A prefix filling all 155 bytes (byte 475 set): read whole.
  const long = 'p'.repeat(150) + '/abcd';
  assert.equal(agree(tarHeader(folder('b', { prefix: long }), 0)), `${long}/b`);
  // star writes times after a prefix of at most 130 bytes (byte 475 zero): they are not the prefix.
  assert.equal(agree(edited(folder('b', { prefix: 'short' }), 0, (block) => block.write('14707041025\0', 476, 'latin1'))), 'short/b');
  // A name of exactly 100 bytes has no NUL: the field is read to its end.
  assert.equal(agree(tarHeader(folder('n'.repeat(100)), 0)), 'n'.repeat(100));
  // Bytes after a field's NUL: node-tar would drop them, another reader might not.
  const afterNul = refusal(Buffer.concat([edited(folder('a'), 0, (block) => block.write('hidden', 50, 'latin1')), END]));
  assert.equal(afterNul.code, 'E_TAR_AMBIGUOUS');
  assert.match(afterNul.message, /bytes after the end of a text field/);
  assert.equal(refusal(Buffer.concat([edited(folder('a', { prefix: 'p' }), 0, (block) => block.write('hidden', 400, 'latin1')), END])).code, 'E_TAR_AMBIGUOUS');
});

test('PAX records: path and size apply to the next entry only, the last one wins, and they are read strictly', () => {
  // A size record overrides the header's; the entry's data is then as long as the record says.
  const sized = Buffer.concat([
    rawTar([{ path: 'PaxHeaders/a', typeflag: 'x', data: paxData([['size', '700']]) }]).subarray(0, 1024),
    withData(tarHeader(file('a'), 0), Buffer.alloc(700, 'a')),
    rawTar([file('b')]),
  ]);
  assert.deepEqual(entries(sized), [
    { path: 'a', type: 'File', size: 700 },
    { path: 'b', type: 'File', size: 1 },
  ]);
  const twoHeaders = rawTar([
    { path: 'PaxHeaders/1', typeflag: 'x', data: paxData([['path', 'first']]) },
    file('ignored', 'x', { pax: [['path', 'second']] }),
    file('own-name'),
  ]);
  assert.deepEqual(entries(twoHeaders).map((entry) => entry.path), ['second', 'own-name']);
  const within = rawTar([file('ignored', 'x', { pax: [['path', 'first'], ['path', 'last']] })]);
  assert.deepEqual(entries(within).map((entry) => entry.path), ['last']);
  // A GNU long name and a PAX path before one entry: the later one wins, as in node-tar.
  const both = rawTar([{ path: '././@LongLink', typeflag: 'L', data: Buffer.from('from-longname\0') }, file('ignored', 'x', { pax: [['path', 'from-pax']] })]);
  assert.deepEqual(entries(both).map((entry) => entry.path), ['from-pax']);
  // An empty extended header: nothing to apply.
  assert.deepEqual(entries(rawTar([{ path: 'PaxHeaders/empty', typeflag: 'x' }, file('a')])).map((entry) => entry.path), ['a']);
  // The widest values each record takes.
  for (const key of ['mtime', 'atime', 'ctime']) {
    for (const value of ['0', '7', '-1', '1700000000', '1.5', '-1.25', `${'9'.repeat(20)}.${'9'.repeat(20)}`]) {
      assert.deepEqual(entries(rawTar([file('x', 'x', { pax: [[key, value]] })])).map((entry) => entry.path), ['x'], `${key} ${value}`);
    }
  }
  for (const key of ['uid', 'gid', 'mode']) {
    for (const value of ['0', '1000', '9'.repeat(16)]) assert.deepEqual(entries(rawTar([file('x', 'x', { pax: [[key, value]] })])).map((entry) => entry.path), ['x'], `${key} ${value}`);
  }
  // Values as tar tools write them, multi-byte characters counted in bytes.
  const values: Array<[string, string]> = [['mtime', '1700000000.123456789'], ['atime', '-1'], ['ctime', '0'], ['uid', '1000'], ['gid', '0'], ['mode', '644'], ['uname', 'jürgen'], ['gname', ''], ['path', 'dossier/é']];
  assert.deepEqual(entries(rawTar([file('x', 'x', { pax: values })])).map((entry) => entry.path), ['dossier/é']);
  // The records' own folder entry may have a PAX path too.
  assert.deepEqual(entries(rawTar([folder('x/', { pax: [['path', 'dossier']] })])), [{ path: 'dossier', type: 'Directory', size: 0 }]);
});

test('malformed PAX records are refused, each with its code', () => {
  const record = (text: string | Buffer) => rawTar([{ path: 'PaxHeaders/a', typeflag: 'x', data: Buffer.from(text) }, file('a')]);
  const cases: Array<[string, Buffer, string, RegExp?]> = [
    ['a length that is not a number', record('xx path=a\n'), 'E_TAR_EXTENDED_HEADER', /malformed record at byte 0/],
    ['no space after the length', record('11path=abc\n'), 'E_TAR_EXTENDED_HEADER'],
    ['a length with a leading zero', record('012 path=ab\n'), 'E_TAR_EXTENDED_HEADER'],
    ['a length of zero', record('0 path=a\n'), 'E_TAR_EXTENDED_HEADER'],
    ['a length past the data', record('99 path=a\n'), 'E_TAR_EXTENDED_HEADER'],
    ['a length one short (the newline is not last)', record('10 path=ab\n'), 'E_TAR_EXTENDED_HEADER'],
    ['a length one long', Buffer.from(record('12 path=ab\nx')), 'E_TAR_EXTENDED_HEADER'],
    ['no equals sign', record('9 pathab\n'), 'E_TAR_EXTENDED_HEADER'],
    ['an empty key', record('9 =value\n'), 'E_TAR_EXTENDED_HEADER'],
    ['bytes that are not UTF-8', record(Buffer.concat([Buffer.from('10 path='), Buffer.from([0xff]), Buffer.from('\n')])), 'E_TAR_EXTENDED_HEADER'],
    ['a control character in the value', record('12 path=a\tb\n'), 'E_TAR_EXTENDED_HEADER'],
    ['a second record that is malformed', record('12 mtime=12\n9 path=ab\n'), 'E_TAR_EXTENDED_HEADER', /malformed record at byte 12/],
    ['an unknown key', rawTar([file('a', 'x', { pax: [['comment', 'hi']] })]), 'E_TAR_EXTENDED_HEADER', /'comment'/],
    ['a linkpath', rawTar([file('a', 'x', { pax: [['linkpath', '/etc/passwd']] })]), 'E_TAR_EXTENDED_HEADER'],
    ['GNU sparse records', rawTar([file('a', 'x', { pax: [['GNU.sparse.size', '1']] })]), 'E_TAR_ENTRY_TYPE', /GNU sparse file/],
    ['GNU sparse records after a path', rawTar([file('a', 'x', { pax: [['path', 'named'], ['GNU.sparse.major', '1']] })]), 'E_TAR_ENTRY_TYPE', /'named'/],
  ];
  // Times: decimal seconds, signed, up to 20 digits each side of the point. Ids, mode and size:
  // up to 16 decimal digits. Anything else is unreadable.
  const unreadable: Array<[string, string]> = [];
  for (const key of ['mtime', 'atime', 'ctime']) {
    for (const bad of ['x1', '1x', '1e5', '1.', '1.x', '1.5x', '--1', '+1', '', '1'.repeat(21), `1.${'1'.repeat(21)}`, '1.5.5']) unreadable.push([key, bad]);
  }
  for (const key of ['uid', 'gid', 'mode', 'size']) {
    for (const bad of ['x1', '1x', '-1', '1.0', '', '1'.repeat(17)]) unreadable.push([key, bad]);
  }
  for (const [key, bad] of unreadable) {
    cases.push([`an unreadable ${key} (${JSON.stringify(bad)})`, rawTar([file('a', 'x', { pax: [[key, bad]] })]), 'E_TAR_EXTENDED_HEADER', new RegExp(`unreadable '${key}'`)]);
  }
  for (const [name, raw, code, message] of cases) {
    const result = refusal(raw);
    assert.equal(result.code, code, `${name}: ${result.message}`);
    if (message) assert.match(result.message, message, name);
  }
  // The length counts bytes: a two-byte character is two.
  assert.deepEqual(entries(record('11 path=é\n')).map((entry) => entry.path), ['é']);
  assert.equal(refusal(record('10 path=é\n')).code, 'E_TAR_EXTENDED_HEADER');
});

test('GNU long names: read to their NUL, refused with bytes after it or a control character', () => {
  const longName = (data: Buffer | string) => rawTar([{ path: '././@LongLink', typeflag: 'L', data: Buffer.from(data) }, file('placeholder')]);
  assert.deepEqual(entries(longName('releases/named\0')).map((entry) => entry.path), ['releases/named']);
  assert.deepEqual(entries(longName('releases/named\0\0\0')).map((entry) => entry.path), ['releases/named']);
  assert.deepEqual(entries(longName('releases/unterminated')).map((entry) => entry.path), ['releases/unterminated']);
  assert.equal(refusal(longName('releases/named\0../../x')).code, 'E_TAR_AMBIGUOUS');
  assert.equal(refusal(longName('releases/a\nb\0')).code, 'E_TAR_EXTENDED_HEADER');
  assert.equal(refusal(longName('releases/a\u007fb\0')).code, 'E_TAR_EXTENDED_HEADER');
  // As GNU tar writes a long name: GNU headers throughout, no prefix field.
  const gnu = Buffer.concat([
    withData(tarHeader({ path: '././@LongLink', typeflag: 'L', magic: 'gnu' }, 15), Buffer.from('releases/named\0')),
    withData(tarHeader(file('releases/nam', 'x', { magic: 'gnu' }), 1), Buffer.from('x')),
    END,
  ]);
  assert.deepEqual(entries(gnu), [{ path: 'releases/named', type: 'File', size: 1 }]);
  // A long name for a folder.
  assert.deepEqual(entries(rawTar([{ path: '././@LongLink', typeflag: 'L', data: Buffer.from('dossier/\0') }, folder('placeholder/')])), [{ path: 'dossier', type: 'Directory', size: 0 }]);
});

test('an extended path and a prefix field on one entry: two readers could join them differently', () => {
  for (const prefix of ['releases', 'p'.repeat(155)]) {
    const result = refusal(rawTar([file('a', 'x', { prefix, pax: [['path', 'b']] })]));
    assert.equal(result.code, 'E_TAR_AMBIGUOUS', prefix);
    assert.match(result.message, /both an extended path and a prefix/);
  }
});

test('paths: absolute, climbing, unnormalized and empty ones are refused with their codes', () => {
  const cases: Array<[string, RawHeader, string]> = [
    ['absolute', file('/etc/passwd'), 'E_TAR_ABSOLUTE'],
    ['a drive and a backslash', file('C:\\Windows\\x'), 'E_TAR_ABSOLUTE'],
    ['a drive and a slash', file('c:/x'), 'E_TAR_ABSOLUTE'],
    ['a drive without a slash', file('C:x'), 'E_TAR_BAD_PATH'],
    ['a leading ..', file('../x'), 'E_TAR_TRAVERSAL'],
    ['.. alone', folder('..'), 'E_TAR_TRAVERSAL'],
    ['.. in the middle', file('a/../../x'), 'E_TAR_TRAVERSAL'],
    ['.. between backslashes', file('a\\..\\x'), 'E_TAR_TRAVERSAL'],
    ['.. after ./', file('./../x'), 'E_TAR_TRAVERSAL'],
    ['an empty segment', file('a//b'), 'E_TAR_BAD_PATH'],
    ['a . segment', file('a/./b'), 'E_TAR_BAD_PATH'],
    ['a backslash', file('a\\b'), 'E_TAR_BAD_PATH'],
    ['a control character', file('a\u0001b'), 'E_TAR_BAD_PATH'],
    ['a file named .', file('.'), 'E_TAR_BAD_PATH'],
    ['a file named ./', { path: './', typeflag: '0' }, 'E_TAR_AMBIGUOUS'],
    ['an empty name', file(''), 'E_TAR_BAD_PATH'],
    ['a path over 1024 characters', file('long', 'x', { pax: [['path', `${'d/'.repeat(600)}x`]] }), 'E_TAR_BAD_PATH'],
    ['a file with a folder\'s name', file('a/'), 'E_TAR_AMBIGUOUS'],
    ['a file whose header name is a folder\'s', file('a/', 'x', { pax: [['path', 'a']] }), 'E_TAR_AMBIGUOUS'],
  ];
  for (const [name, entry, code] of cases) {
    const result = refusal(rawTar([entry]));
    assert.equal(result.code, code, `${name}: ${result.message}`);
  }
  // Ordinary and unusual names that are still paths inside the release.
  const fine = ['a', 'a.b/c', '...', '.hidden', 'é/🙂', 'x/c:/y', 'x'.repeat(100)];
  assert.deepEqual(entries(rawTar(fine.map((path) => file(path.length > 99 ? 'long' : path, 'x', path.length > 99 ? { pax: [['path', path]] } : {})))).map((entry) => entry.path), fine);
});

test('a folder with a body, and a path read two ways, are refused', () => {
  const body = refusal(rawTar([folder('a/', { data: Buffer.from('hidden entry') })]));
  assert.equal(body.code, 'E_TAR_AMBIGUOUS');
  assert.match(body.message, /declares a body of 12 bytes/);
  assert.equal(refusal(rawTar([folder('a/', { pax: [['size', '1']] })])).code, 'E_TAR_AMBIGUOUS', 'a body declared by PAX');
  for (const [name, list] of [
    ['the same file twice', [file('a'), file('a')]],
    ['the same folder twice', [folder('a'), folder('a/')]],
    ['one path written two ways', [file('a/b'), file('./a/b')]],
    ['the root folder twice', [folder('./'), folder('.')]],
    ['a file, then a file inside it', [file('a'), file('a/b')]],
    ['a file, then a file deep inside it', [file('a'), file('a/b/c')]],
    ['a file inside a folder, then a file of that name', [file('a/b'), file('a')]],
    ['a deep file, then a file at its parent folder', [file('a/b/c'), file('a/b')]],
  ] as const) {
    const result = refusal(rawTar([...list]));
    assert.equal(result.code, 'E_TAR_AMBIGUOUS', name);
  }
  // A folder named after the files inside it is what archives hold.
  assert.equal(entries(rawTar([file('a/b/c'), folder('a/b'), folder('a'), file('a/d')])).length, 4);
});

test('each refused type has its code, named with the entry', () => {
  const codes: Record<string, string> = { '1': 'E_TAR_HARDLINK', '2': 'E_TAR_SYMLINK', '3': 'E_TAR_DEVICE', '4': 'E_TAR_DEVICE', '6': 'E_TAR_DEVICE' };
  const kinds: Record<string, RegExp> = { '3': /character device/, '4': /block device/, '6': /FIFO/, S: /GNU sparse file/, g: /PAX global header/, V: /volume label/, Z: /unknown type \(typeflag "Z"\)/ };
  for (const typeflag of ['1', '2', '3', '4', '6', '7', 'g', 'X', 'K', 'N', 'S', 'V', 'M', 'D', 'A', 'I', 'Z', '9']) {
    const result = refusal(rawTar([{ path: 'releases/entry', typeflag, size: 0 }]));
    assert.equal(result.code, codes[typeflag] ?? 'E_TAR_ENTRY_TYPE', typeflag);
    assert.equal(refusedTypeError('test.tar', 'releases/entry', typeflag).code, result.code);
    assert.match(result.message, /'releases\/entry'/, typeflag);
    if (kinds[typeflag]) assert.match(result.message, kinds[typeflag]!, typeflag);
  }
  // Every type the scanner knows is said for what it is, never as an unknown type.
  for (const typeflag of ['7', 'g', 'X', 'K', 'N', 'S', 'V', 'M', 'D', 'A', 'I']) {
    const { message } = refusedTypeError('test.tar', 'releases/entry', typeflag);
    assert.match(message, /'releases\/entry' is an? [A-Za-z]/, typeflag);
    assert.doesNotMatch(message, /unknown type/, typeflag);
  }
});

test('canonical entry paths: without leading ./ nor trailing slashes, the root folder as an empty path', () => {
  for (const [path, canonical] of [['./', ''], ['.', ''], ['././', ''], ['./a/', 'a'], ['././a', 'a'], ['a//', 'a'], ['a/./b', 'a/./b'], ['.a', '.a'], ['..', '..'], ['.../', '...']] as const) {
    assert.equal(canonicalEntryPath(path), canonical, path);
  }
});

test('a refusal says where: the entry, the extended header or the byte it is about', () => {
  const small: TarLimits = { maxEntryBytes: 4 * KiB, maxTotalBytes: 6 * KiB, maxEntries: 100 };
  const sizeField = (text: string) => Buffer.concat([edited(file('a'), 0, (block) => block.fill(0, 124, 136).write(text, 124, 'latin1')), END]);
  const cases: Array<[string, Buffer, RegExp, TarLimits?]> = [
    ['an entry over the limit', rawTar([file('releases/big', Buffer.alloc(4 * KiB + 1))]), /entry 'releases\/big' is over the limit of 4096 bytes/, small],
    ['an extended header over the limit', rawTar([{ path: 'PaxHeaders/huge', typeflag: 'x', data: paxData([['uname', 'u'.repeat(5 * KiB)]]) }, file('a')]), /extended header 'PaxHeaders\/huge' is over the limit/, small],
    ['padding past the marker', Buffer.concat([rawTar([file('a')]), Buffer.alloc(MiB + 512)]), /padding after the end-of-archive marker is over the limit of 1048576 bytes/],
    ['a negative size', sizeField('\xff'), /header at byte 0 has a negative size/],
    ['an unreadable size', Buffer.concat([rawTar([file('a')]).subarray(0, 1024), sizeField('1x')]), /header at byte 1024 has an unreadable size/],
    ['a size past 2^53', Buffer.concat([edited(file('a'), 0, (block) => block.fill(0x80, 124, 125).fill(0xff, 125, 136)), END]), /entry at byte 0 is over the limit/],
    ['a file with a folder\'s name', rawTar([file('releases/a/')]), /'releases\/a\/'/],
    ['a path twice', rawTar([file('releases/a'), file('releases/a')]), /'releases\/a' twice/],
    ['the root folder twice', rawTar([folder('./'), folder('./')]), /'\.' twice/],
    ['a file that is another entry\'s folder', rawTar([file('releases/a/b'), file('releases/a')]), /'releases\/a' is a file and the folder of another entry/],
    ['a folder that is a file', rawTar([file('releases/a'), file('releases/a/b')]), /'releases\/a' is a file and the folder of 'releases\/a\/b'/],
    ['a long name with bytes after its end', rawTar([{ path: '././@LongLink', typeflag: 'L', data: Buffer.from('a\0b') }, file('x')]), /long name in '\.\/\.\/@LongLink'/],
    ['a long name with a control character', rawTar([{ path: '././@LongLink', typeflag: 'L', data: Buffer.from('releases/a\u0001') }, file('x')]), /'releases\/a\u0001'/],
    ['a malformed record', rawTar([{ path: 'PaxHeaders/bad', typeflag: 'x', data: Buffer.from('12 mtime=12\n9 path=ab\n') }, file('a')]), /'PaxHeaders\/bad' has a malformed record at byte 12/],
    ['an empty file name', rawTar([file('.')]), /entry "\." is empty/],
  ];
  for (const [name, raw, message, limits] of cases) assert.match(refusal(raw, limits).message, message, name);
  // A hostile value is quoted, not copied whole into the message.
  const long = refusal(rawTar([file('a', 'x', { pax: [['mtime', `x${'9'.repeat(100_000)}`]] })]));
  assert.ok(long.message.length < 1000, `a message of ${long.message.length} characters`);
});
