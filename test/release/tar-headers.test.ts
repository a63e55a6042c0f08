// Every tar header is seen: the installer reads each raw 512-byte header itself before anything
// is extracted, including those node-tar skips without a word (GNU sparse `S`, volume labels `V`,
// global headers, ...) and the PAX and GNU long-name headers it applies silently. Each type that
// is not allowed is refused with its code at its header, before its data is inflated; sizes
// count every header's data; nothing is ever written for a refused archive.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, open, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { gunzipSync, gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { extract } from 'tar';
import { installRelease } from '../../kernel/release/install.ts';
import { DEFAULT_TAR_LIMITS, TarScanner, refusedTypeError, type TarLimits } from '../../kernel/release/tar-scan.ts';
import { sharedExamples, gzipBomb, paxData, rawTar, tarHeader, tempDir, watchWrites, type RawHeader } from './helpers.ts';

const built = sharedExamples();
const KiB = 1024;
const MiB = 1024 * KiB;
const gnuTar = /GNU tar/.test(spawnSync('tar', ['--version'], { encoding: 'utf8' }).stdout ?? '');
const ALLOWED_TYPES = new Set(['0', '', '5', 'x', 'L']);

/** The code each refused type flag has (links and devices keep the codes they always had). */
function expectedTypeCode(typeflag: string): string {
  return refusedTypeError('archive', 'path', typeflag).code;
}

/** Installs `archive` into a fresh, watched deploy root; returns the error and what was written. */
async function installWatched(archive: string, limits?: TarLimits, alsoWatch: string[] = []): Promise<{ error: (Error & { code: string }) | null; written: string[]; root: string }> {
  const root = await tempDir('theseus-root-');
  await mkdir(join(root, 'releases'));
  const watcher = watchWrites([root, join(root, 'releases'), ...alsoWatch]);
  const error = await installRelease(root, archive, limits ? { limits } : {}).then(
    () => null,
    (failure: Error & { code: string }) => failure,
  );
  return { error, written: await watcher.stop(), root };
}

async function writeArchive(bytes: Buffer, name = 'evil.tar.gz'): Promise<string> {
  const file = join(await tempDir('theseus-tar-'), name);
  await writeFile(file, bytes);
  return file;
}

/** Raw typeflags of the headers in a plain tar (data skipped by each header's size field). */
function typeflags(raw: Buffer): string[] {
  const flags: string[] = [];
  for (let offset = 0; offset + 512 <= raw.length; ) {
    const block = raw.subarray(offset, offset + 512);
    if (block.every((byte) => byte === 0)) break;
    flags.push(String.fromCharCode(block[156]!));
    const size = Number.parseInt(block.toString('latin1', 124, 136).replace(/\0.*$/s, '').trim(), 8);
    offset += 512 + Math.ceil(size / 512) * 512;
  }
  return flags;
}

test('a real GNU sparse file, from GNU tar --sparse in its gnu and pax formats, is refused at its header', { skip: !gnuTar && 'GNU tar is not installed' }, async () => {
  for (const format of ['gnu', 'pax'] as const) {
    const source = await tempDir('theseus-sparse-');
    await mkdir(join(source, 'releases', '0.9.0'), { recursive: true });
    await writeFile(join(source, 'releases', '0.9.0', 'manifest.json'), '{}');
    // 64 MiB of hole and one byte of data: GNU tar stores it as a sparse entry.
    const disk = await open(join(source, 'releases', '0.9.0', 'disk.img'), 'w');
    await disk.write('x', 64 * MiB);
    await disk.close();
    const archive = join(await tempDir('theseus-sparse-'), 'sparse.tar.gz');
    const tar = spawnSync('tar', ['--sparse', `--format=${format}`, '-czf', archive, '-C', source, 'releases'], { encoding: 'utf8' });
    assert.equal(tar.status, 0, tar.stderr);
    const raw = gunzipSync(await readFile(archive));
    // The archive really holds what GNU tar writes for a sparse file.
    if (format === 'gnu') assert.ok(typeflags(raw).includes('S'), `no 'S' header in ${typeflags(raw).join(',')}`);
    else assert.match(raw.toString('latin1'), /GNU\.sparse\.major=1/);
    const { error, written } = await installWatched(archive);
    assert.equal(error?.code, 'E_TAR_ENTRY_TYPE', `${format}: ${error?.message}`);
    assert.match(error!.message, /GNU sparse file/);
    assert.deepEqual(written, [], `${format}: something was written`);
  }
});

test('a real PAX archive (GNU tar --format=pax, an extended header before every entry) installs', { skip: !gnuTar && 'GNU tar is not installed' }, async () => {
  const { results } = await built;
  const image = await tempDir('theseus-pax-image-');
  await extract({ file: results[0]!.tarball, cwd: image });
  const archive = join(await tempDir('theseus-pax-'), 'sequence-0.1.0.tar.gz');
  const tar = spawnSync('tar', ['--format=pax', '-czf', archive, '-C', image, '.'], { encoding: 'utf8' });
  assert.equal(tar.status, 0, tar.stderr);
  const flags = typeflags(gunzipSync(await readFile(archive)));
  assert.ok(flags.filter((flag) => flag === 'x').length >= 10, `PAX headers: ${flags.join(',')}`);
  const root = await tempDir('theseus-root-');
  const installed = await installRelease(root, archive);
  assert.equal(installed.version, '0.1.0');
  assert.deepEqual((await readdir(join(root, 'releases'))).sort(), ['0.1.0', 'RELEASES'], 'only the release was installed, no staging folder left');
});

test('hand-written hostile headers are refused at the header, each with its own code, and nothing is ever written', async () => {
  const outside = await tempDir('theseus-outside-');
  const file = (path: string, extra: Partial<RawHeader> = {}): RawHeader => ({ path, typeflag: '0', data: Buffer.from('x'), ...extra });
  const manifest = file('releases/0.9.0/manifest.json', { data: Buffer.from('{}') });
  const longName = (name: string): RawHeader[] => [{ path: '././@LongLink', typeflag: 'L', data: Buffer.from(`${name}\0`) }, file('placeholder')];
  const gz = (entries: RawHeader[], tail: Buffer = Buffer.alloc(0)) => gzipSync(Buffer.concat([rawTar(entries), tail]));
  const small: TarLimits = { maxEntryBytes: 64 * KiB, maxTotalBytes: MiB, maxEntries: 100 };
  const cases: Array<{ name: string; archive: Buffer; code: string; limits?: TarLimits }> = [
    { name: 'a GNU sparse entry', archive: gz([manifest, { path: 'releases/0.9.0/disk.img', typeflag: 'S', size: 0 }]), code: 'E_TAR_ENTRY_TYPE' },
    { name: 'a tape volume label', archive: gz([{ path: 'VOLUME', typeflag: 'V', size: 0 }, manifest]), code: 'E_TAR_ENTRY_TYPE' },
    { name: 'a PAX global header', archive: gz([{ path: 'global', typeflag: 'g', data: Buffer.from('16 path=../../x\n') }, manifest]), code: 'E_TAR_ENTRY_TYPE' },
    { name: 'a GNU long link name', archive: gz([{ path: '././@LongLink', typeflag: 'K', data: Buffer.from('/etc/passwd\0') }, manifest]), code: 'E_TAR_ENTRY_TYPE' },
    { name: 'a GNU dump folder', archive: gz([{ path: 'releases/0.9.0/dump', typeflag: 'D', size: 0 }]), code: 'E_TAR_ENTRY_TYPE' },
    { name: 'a contiguous file', archive: gz([{ path: 'releases/0.9.0/c', typeflag: '7', data: Buffer.from('x') }]), code: 'E_TAR_ENTRY_TYPE' },
    { name: 'an unknown type', archive: gz([{ path: 'releases/0.9.0/z', typeflag: 'Z', size: 0 }]), code: 'E_TAR_ENTRY_TYPE' },
    { name: 'a 2 GiB GNU sparse entry (a bomb of a skipped type)', archive: gzipBomb([{ path: 'releases/0.9.0/disk.img', typeflag: 'S', size: 2048 * MiB }]), code: 'E_TAR_ENTRY_TYPE' },
    { name: 'a PAX path climbing out', archive: gz([file('releases/0.9.0/a', { pax: [['path', `../../../..${outside}/escaped.txt`]] })]), code: 'E_TAR_TRAVERSAL' },
    { name: 'an absolute PAX path', archive: gz([file('releases/0.9.0/a', { pax: [['path', `${outside}/absolute.txt`]] })]), code: 'E_TAR_ABSOLUTE' },
    { name: 'a PAX linkpath record', archive: gz([file('releases/0.9.0/a', { pax: [['linkpath', '/etc/passwd']] })]), code: 'E_TAR_EXTENDED_HEADER' },
    { name: "a PAX 'type' record (node-tar would apply it to the entry)", archive: gz([file('releases/0.9.0/a', { pax: [['type', 'SymbolicLink']] })]), code: 'E_TAR_EXTENDED_HEADER' },
    { name: 'PAX GNU.sparse records', archive: gz([file('releases/0.9.0/a', { pax: [['GNU.sparse.major', '1']] })]), code: 'E_TAR_ENTRY_TYPE' },
    { name: 'a PAX value with a newline (node-tar reads records line by line)', archive: gz([file('releases/0.9.0/a', { pax: [['path', 'releases/0.9.0/a\n17 path=../../x']] })]), code: 'E_TAR_EXTENDED_HEADER' },
    { name: 'a GNU long name climbing out', archive: gz(longName(`../../../..${outside}/escaped.txt`)), code: 'E_TAR_TRAVERSAL' },
    { name: 'a backslash climbing out', archive: gz([file('releases\\..\\..\\escaped.txt')]), code: 'E_TAR_TRAVERSAL' },
    { name: 'a prefix field making the path absolute', archive: gz([file('passwd', { prefix: `${outside}` })]), code: 'E_TAR_ABSOLUTE' },
    { name: 'a control character in a path', archive: gz([file('releases/0.9.0/a\nb')]), code: 'E_TAR_BAD_PATH' },
    { name: 'an empty segment in a path', archive: gz([file('releases//0.9.0/a')]), code: 'E_TAR_BAD_PATH' },
    { name: 'a folder with a body', archive: gz([{ path: 'releases/0.9.0/dir/', typeflag: '5', data: Buffer.from(rawTar([file('x')])) }]), code: 'E_TAR_AMBIGUOUS' },
    { name: 'the same path twice', archive: gz([manifest, manifest]), code: 'E_TAR_AMBIGUOUS' },
    { name: 'a file used as a folder', archive: gz([file('releases/0.9.0/a'), file('releases/0.9.0/a/b')]), code: 'E_TAR_AMBIGUOUS' },
    { name: 'a lone zero block between entries', archive: gzipSync(Buffer.concat([tarHeader(file('a'), 1), Buffer.alloc(512, 'x'), Buffer.alloc(512), rawTar([manifest])])), code: 'E_TAR_AMBIGUOUS' },
    { name: 'data after the end-of-archive marker', archive: gz([manifest], Buffer.from(rawTar([file('releases/0.9.0/hidden')]))), code: 'E_TAR_AMBIGUOUS' },
    { name: 'a bad checksum', archive: gzipSync(Buffer.concat([Buffer.from(tarHeader(file('a'), 1)).fill(0x31, 148, 154), Buffer.alloc(512, 'x'), Buffer.alloc(1024)])), code: 'E_TAR_CORRUPT' },
    { name: 'no end-of-archive marker (truncated)', archive: gzipSync(rawTar([manifest]).subarray(0, 1024)), code: 'E_TAR_CORRUPT' },
    { name: 'an 8 GiB entry (a base-256 size)', archive: gzipSync(Buffer.concat([tarHeader(file('releases/0.9.0/huge'), 8 * 1024 * MiB), Buffer.alloc(1024)])), code: 'E_TAR_TOO_LARGE' },
    { name: 'a 200 KiB GNU long name (extension data counts)', archive: gz(longName(`releases/${'a'.repeat(200 * KiB)}`)), code: 'E_TAR_TOO_LARGE', limits: small },
    { name: 'a 2 MiB PAX header (node-tar would ignore it, path and all)', archive: gz([file('releases/0.9.0/a', { pax: [['path', `releases/${'a'.repeat(2 * MiB)}`]] })]), code: 'E_TAR_TOO_LARGE' },
    {
      name: 'PAX headers adding up past the total limit',
      archive: gz([...Array.from({ length: 30 }, () => ({ path: 'PaxHeaders/x', typeflag: 'x', data: paxData([['path', 'a'.repeat(40 * KiB)]]) })), manifest]),
      code: 'E_TAR_TOO_LARGE',
      limits: small,
    },
    { name: 'more headers than the entry limit (extension headers count)', archive: gz([file('a', { pax: [['mtime', '0']] }), file('b', { pax: [['mtime', '0']] })]), code: 'E_TAR_TOO_LARGE', limits: { ...small, maxEntries: 3 } },
  ];
  for (const { name, archive, code, limits } of cases) {
    const { error, written } = await installWatched(await writeArchive(archive), limits, [outside]);
    assert.equal(error?.code, code, `${name}: got ${error?.code}: ${error?.message}`);
    assert.deepEqual(written, [], `${name}: something was written`);
  }
  assert.deepEqual(await readdir(outside), []);
});

test('property: any single header of a type not allowed is refused with that type\'s code, whatever its path and size', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 255 }).map((byte) => String.fromCharCode(byte)),
      fc.string({ unit: fc.constantFrom('a', '.', '/', '\\', 'é', ' ', '\n'), minLength: 1, maxLength: 30 }),
      fc.oneof(fc.integer({ min: 0, max: 4096 }), fc.constantFrom(2048 * MiB, 8 ** 11 - 1, 8 * 1024 * MiB)),
      (typeflag, path, size) => {
        const block = tarHeader({ path, typeflag }, size);
        const scanner = new TarScanner('archive', DEFAULT_TAR_LIMITS);
        // Typeflag 0 is written as NUL: an old-style plain file.
        const flag = typeflag === '\0' ? '' : typeflag;
        let code: string | null = null;
        try {
          scanner.push(block);
        } catch (error) {
          code = (error as { code: string }).code;
        }
        if (!ALLOWED_TYPES.has(flag)) assert.equal(code, expectedTypeCode(flag), `typeflag ${JSON.stringify(flag)} path ${JSON.stringify(path)} size ${size}`);
      },
    ),
    { numRuns: 3000 },
  );
});

test('property: a real release with random headers mixed in (types, paths, sizes, PAX paths) never writes outside the deploy root, and is refused when one has a type not allowed', async () => {
  const { results } = await built;
  const outside = await tempDir('theseus-outside-');
  // The example's 0.2.0, entry by entry: on its own it installs.
  const image = await tempDir('theseus-image-');
  await extract({ file: results[1]!.tarball, cwd: image });
  const releaseFiles = (await readdir(join(image, 'releases', '0.2.0'), { recursive: true, withFileTypes: true })).filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
  const release: RawHeader[] = await Promise.all(releaseFiles.map(async (f) => ({ path: f.slice(image.length + 1), typeflag: '0', data: await readFile(f) })));
  const alone = await installWatched(await writeArchive(gzipSync(rawTar(release))));
  assert.equal(alone.error, null, `the release alone installs: ${alone.error?.message}`);
  const path = fc.oneof(
    fc.constantFrom('releases/0.2.0/extra.mjs', 'releases/0.2.0/', 'lib/x', './releases/0.2.0/b', 'releases/0.2.0/services'),
    fc.constantFrom(`${outside}/abs`, `../../../../../../..${outside}/up`, 'releases/0.2.0/../../../../../../../tmp/x', 'a\\..\\..\\x', '/'),
    fc.string({ unit: fc.constantFrom('a', '.', '/', '..', '\\'), minLength: 1, maxLength: 12 }),
  );
  const hostile = fc.record({
    typeflag: fc.constantFrom('0', '5', 'S', 'V', 'g', 'K', '1', '2', '3', '6', '7', 'M', 'N', 'Z'),
    path,
    paxPath: fc.option(path, { nil: undefined }),
    size: fc.constantFrom(0, 1, 511, 512, 4096),
    at: fc.nat(),
  });
  await fc.assert(
    fc.asyncProperty(fc.array(hostile, { minLength: 1, maxLength: 3 }), async (mixedIn) => {
      const headers = [...release];
      for (const e of mixedIn) {
        headers.splice(e.at % (headers.length + 1), 0, {
          path: e.path,
          typeflag: e.typeflag,
          data: e.typeflag === '5' ? Buffer.alloc(0) : Buffer.alloc(e.size, 'a'),
          ...(e.paxPath === undefined ? {} : { pax: [['path', e.paxPath]] as Array<[string, string]> }),
        });
      }
      const { error, written, root } = await installWatched(await writeArchive(gzipSync(rawTar(headers))), undefined, [outside]);
      assert.deepEqual(written.filter((line) => !line.includes(join(root, 'releases'))), [], 'written outside releases/');
      assert.deepEqual(await readdir(outside), [], 'written outside the deploy root');
      const refusedType = mixedIn.find((e) => !ALLOWED_TYPES.has(e.typeflag));
      if (refusedType) assert.notEqual(error, null, `an archive holding a '${refusedType.typeflag}' header was installed`);
    }),
    { numRuns: 40 },
  );
});
