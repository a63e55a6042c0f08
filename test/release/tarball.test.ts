// Release tarballs (kernel/release/tarball.ts) in this process, without the unpack worker: packing
// is reproducible, a file is known by its first bytes, the scan reads gzip and plain tar alike and
// stops at a refusal, and the extraction writes only the release folder, with our modes and
// owner, and stops at the first entry node-tar reads otherwise than the scan did.
// install.test.ts and tar-headers.test.ts go through the installer and its worker; this file is
// the fast one, which `npm run mutate -- tarball` runs once per mutant.

import { tempDir } from '../temp-dirs.ts';
import assert from 'node:assert/strict';
import { chmod, mkdir, open, readdir, readFile, stat, utimes, writeFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { list } from 'tar';
import { DEFAULT_TAR_LIMITS, extractScanned, packTarball, scanArchive, sniffArchive, type TarEntry } from '../../kernel/release/tarball.ts';
import { padding, rawTar, sealHeader, tarHeader, type RawHeader } from './raw-tar.ts';


async function writeTemp(name: string, bytes: Buffer): Promise<string> {
  const file = join(await tempDir('theseus-tarball-'), name);
  await writeFile(file, bytes);
  return file;
}

async function withFile<T>(file: string, use: (handle: FileHandle) => Promise<T>): Promise<T> {
  const handle = await open(file, 'r');
  try {
    return await use(handle);
  } finally {
    await handle.close();
  }
}

const scanFile = (file: string, format: 'gzip' | 'tar', limits = DEFAULT_TAR_LIMITS) => withFile(file, (handle) => scanArchive(file, handle, format, limits));

/** Scans `file`, then extracts `folder` into a fresh `dest` with `scanned` (the scan's own entries unless given). */
async function extract(file: string, folder: string, scanned?: TarEntry[]): Promise<{ dest: string; error: (Error & { code?: string }) | null }> {
  const dest = join(await tempDir('theseus-extract-'), 'staging');
  const error = await withFile(file, async (handle) => {
    const entries = scanned ?? (await scanArchive(file, handle, 'gzip', DEFAULT_TAR_LIMITS));
    return extractScanned(file, handle, dest, entries, folder).then(
      () => null,
      (failure: Error & { code?: string }) => failure,
    );
  });
  return { dest, error };
}

async function filesBelow(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true })).map(String).sort();
}

const file = (path: string, data = 'x', extra: Partial<RawHeader> = {}): RawHeader => ({ path, typeflag: '0', data: Buffer.from(data), ...extra });
const folder = (path: string): RawHeader => ({ path, typeflag: '5' });

/** A header whose mode, uid and gid are set by hand. */
function owned(entry: RawHeader, size: number, mode: number, uid: number): Buffer {
  const block = tarHeader(entry, size);
  block.write(`${mode.toString(8).padStart(7, '0')}\0`, 100, 8, 'latin1');
  block.write(`${uid.toString(8).padStart(7, '0')}\0`, 108, 8, 'latin1');
  block.write(`${uid.toString(8).padStart(7, '0')}\0`, 116, 8, 'latin1');
  return sealHeader(block);
}

const release = [folder('releases/'), folder('releases/1.0.0/'), file('releases/1.0.0/manifest.json', '{}'), folder('releases/1.0.0/lib/'), file('releases/1.0.0/lib/a.mjs', 'a'.repeat(140_000))];

test('packing is reproducible: the same files give the same bytes, whatever their order, times and owner', async () => {
  const dir = await tempDir('theseus-pack-');
  await mkdir(join(dir, 'b'));
  await writeFile(join(dir, 'b', 'z.txt'), 'z');
  await writeFile(join(dir, 'a.txt'), 'a');
  await writeFile(join(dir, 'b', 'not-listed.txt'), 'left out');
  const first = join(dir, '..', `${Date.now()}-first.tar.gz`);
  await packTarball(dir, ['b/z.txt', 'a.txt'], first);
  // Other access and modification times, and a new change time (chmod).
  await utimes(join(dir, 'a.txt'), new Date(2001, 1, 1), new Date(2002, 2, 2));
  await chmod(join(dir, 'b', 'z.txt'), 0o600);
  await chmod(join(dir, 'b', 'z.txt'), 0o644);
  const second = join(dir, '..', `${Date.now()}-second.tar.gz`);
  await packTarball(dir, ['a.txt', 'b/z.txt'], second);
  assert.deepEqual(await readFile(second), await readFile(first));
  const headers: Array<{ path: string; mtime: number; uname: string | undefined }> = [];
  await list({ file: first, onReadEntry: (entry) => headers.push({ path: entry.path, mtime: entry.mtime!.getTime(), uname: entry.header.uname }) });
  assert.deepEqual(headers, [
    { path: 'a.txt', mtime: 0, uname: '' },
    { path: 'b/z.txt', mtime: 0, uname: '' },
  ]);
  assert.deepEqual(await sniffArchive(first), { format: 'gzip' });
});

test('sniffing a file closes it', async () => {
  const archive = await writeTemp('r.tar.gz', gzipSync(rawTar([file('a')])));
  const openDescriptors = async () => (await readdir('/proc/self/fd')).length;
  // Other descriptors of this process may open or close meanwhile (an earlier test's stream
  // closing late made the count one lower once): a leak shows as one more per sniff, so 50
  // sniffs must not add anything near 50.
  const before = await openDescriptors();
  for (let i = 0; i < 50; i++) await sniffArchive(archive);
  const grown = (await openDescriptors()) - before;
  assert.ok(grown < 5, `${grown} descriptors left open by 50 sniffs`);
});

test('a file is known by its first bytes, never by its name', async () => {
  const tar = rawTar([file('a')]);
  const cases: Array<[string, Buffer, { format: string } | RegExp]> = [
    ['gzip', gzipSync(tar), { format: 'gzip' }],
    ['the two bytes of a gzip header alone', Buffer.from([0x1f, 0x8b]), { format: 'gzip' }],
    ['a plain tar', tar, { format: 'tar' }],
    ['one block of a plain tar', tar.subarray(0, 512), { format: 'tar' }],
    ['a plain tar cut inside its first header', tar.subarray(0, 300), /neither a gzip stream nor a tar archive/],
    ['one byte of gzip magic', Buffer.from([0x1f]), /neither/],
    ['gzip magic the wrong way round', Buffer.from([0x8b, 0x1f, 0, 0]), /neither/],
    ['an empty file', Buffer.alloc(0), /empty/],
    ['zstd', Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0, 0]), /zstd/],
    ['bzip2', Buffer.from('BZh91AY&SY'), /bzip2/],
    ['xz', Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0, 0]), /xz/],
    ['zip', Buffer.from([0x50, 0x4b, 0x03, 0x04, 0, 0]), /zip archive/],
    ['xz magic cut short', Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a]), /neither/],
    ['text', Buffer.from('releases/1.0.0/manifest.json\n'.repeat(40)), /neither/],
    ['ustar at the wrong place', Buffer.concat([Buffer.from('ustar'), Buffer.alloc(600)]), /neither/],
  ];
  for (const [name, bytes, expected] of cases) {
    const found = await sniffArchive(await writeTemp('release.tar.gz', bytes));
    if (expected instanceof RegExp) assert.match('other' in found ? found.other : `format ${found.format}`, expected, name);
    else assert.deepEqual(found, expected, name);
  }
});

test('the scan reads gzip and plain tar alike, across reads of 64 KiB', async () => {
  const raw = rawTar(release);
  assert.ok(raw.length > 2 * 64 * 1024, 'more than two reads');
  const expected = [
    { path: 'releases', type: 'Directory', size: 0 },
    { path: 'releases/1.0.0', type: 'Directory', size: 0 },
    { path: 'releases/1.0.0/manifest.json', type: 'File', size: 2 },
    { path: 'releases/1.0.0/lib', type: 'Directory', size: 0 },
    { path: 'releases/1.0.0/lib/a.mjs', type: 'File', size: 140_000 },
  ];
  const big = rawTar([...release, file('releases/1.0.0/big.bin', 'b'.repeat(200_000))]);
  assert.deepEqual(await scanFile(await writeTemp('r.tar.gz', gzipSync(raw)), 'gzip'), expected);
  assert.deepEqual(await scanFile(await writeTemp('r.tar', raw), 'tar'), expected);
  assert.deepEqual((await scanFile(await writeTemp('r.tar', big), 'tar')).map((entry) => entry.size), [0, 0, 2, 0, 140_000, 200_000]);
});

test('the scan keeps the refusal of a header, and says a stream it cannot inflate is corrupt', async () => {
  const traversal = await writeTemp('r.tar.gz', gzipSync(rawTar([file('../escape')])));
  await assert.rejects(scanFile(traversal, 'gzip'), { code: 'E_TAR_TRAVERSAL' });
  const garbage = await writeTemp('r.tar.gz', Buffer.concat([Buffer.from([0x1f, 0x8b]), Buffer.from('not deflate at all')]));
  await assert.rejects(scanFile(garbage, 'gzip'), (error: Error & { code: string }) => {
    assert.equal(error.code, 'E_TAR_CORRUPT');
    assert.ok(error.message.includes(garbage), 'the archive is named');
    return true;
  });
  // A gzip stream cut short: truncated.
  const cut = gzipSync(rawTar(release));
  await assert.rejects(scanFile(await writeTemp('r.tar.gz', cut.subarray(0, cut.length - 20)), 'gzip'), { code: 'E_TAR_CORRUPT' });
  // The scanner's own refusal of a truncated archive, from a plain tar.
  await assert.rejects(scanFile(await writeTemp('r.tar', rawTar(release).subarray(0, 1536)), 'tar'), { code: 'E_TAR_CORRUPT' });
});

test('a refused header stops the reading: the data behind it is never read', async () => {
  // A plain tar announcing 2 GiB, followed by 8 MiB of its zeros.
  const archive = await writeTemp('bomb.tar', Buffer.concat([tarHeader(file('bomb'), 2048 * 1024 * 1024), Buffer.alloc(8 * 1024 * 1024)]));
  let bytesRead = 0;
  await withFile(archive, async (handle) => {
    const counting = new Proxy(handle, {
      get(target, key) {
        if (key !== 'read') return Reflect.get(target, key, target);
        return async (...args: Parameters<FileHandle['read']>) => {
          const result = await (target.read as (...a: unknown[]) => Promise<{ bytesRead: number }>)(...args);
          bytesRead += result.bytesRead;
          return result;
        };
      },
    });
    await assert.rejects(scanArchive(archive, counting, 'tar', DEFAULT_TAR_LIMITS), { code: 'E_TAR_TOO_LARGE' });
  });
  // Reads are 64 KiB; the stream may have asked for a few ahead, never for the 8 MiB.
  assert.ok(bytesRead > 0 && bytesRead <= 4 * 64 * 1024, `${bytesRead} bytes were read`);
});

test('extraction writes the release folder only, with our modes and owner', async () => {
  const archive = await writeTemp('r.tar.gz', gzipSync(Buffer.concat([
    rawTar([folder('releases/'), folder('releases/1.0.0-other/'), file('releases/1.0.0-other/x'), file('README.md')]).subarray(0, -1024),
    owned(folder('releases/1.0.0/'), 0, 0o7777, 1234),
    owned(file('releases/1.0.0/run.sh'), 1, 0o4777, 1234),
    Buffer.from('x'),
    padding(1),
    rawTar([{ path: 'releases/1.0.0/old-style', typeflag: '\0', data: Buffer.from('v7') }, folder('releases/1.0.0/sub/'), file('releases/1.0.0/sub/b', 'b')]),
  ])));
  // With a umask that lets everything through (a daemon may run with one), the modes are still ours.
  const previousUmask = process.umask(0);
  const { dest, error } = await extract(archive, 'releases/1.0.0').finally(() => process.umask(previousUmask));
  assert.equal(error, null, error?.message);
  assert.deepEqual(await filesBelow(dest), ['releases', 'releases/1.0.0', 'releases/1.0.0/old-style', 'releases/1.0.0/run.sh', 'releases/1.0.0/sub', 'releases/1.0.0/sub/b']);
  const modeOf = async (path: string) => (await stat(join(dest, path))).mode & 0o7777;
  assert.equal(await modeOf('.'), 0o755, 'the staging folder');
  assert.equal(await modeOf('releases/1.0.0'), 0o755, 'no sticky, set-gid or world-writable folder');
  assert.equal(await modeOf('releases/1.0.0/run.sh'), 0o644, 'no set-uid, executable or world-writable file');
  assert.equal(await modeOf('releases/1.0.0/sub/b'), 0o644);
  const owner = await stat(join(dest, 'releases/1.0.0/run.sh'));
  assert.deepEqual([owner.uid, owner.gid], [process.getuid!(), process.getgid!()], 'owned by the installer, not by the uid the archive names');
  assert.equal(await readFile(join(dest, 'releases/1.0.0/old-style'), 'utf8'), 'v7');
});

test('extraction needs a staging folder that does not exist yet', async () => {
  const archive = await writeTemp('r.tar.gz', gzipSync(rawTar(release)));
  const dest = await tempDir('theseus-extract-');
  const entries = await scanFile(archive, 'gzip');
  await assert.rejects(withFile(archive, (handle) => extractScanned(archive, handle, dest, entries, 'releases/1.0.0')), { code: 'EEXIST' });
  assert.deepEqual(await readdir(dest), []);
});

test('node-tar must meet exactly the entries the scan read, in order: the first difference stops the extraction', async () => {
  const archive = await writeTemp('r.tar.gz', gzipSync(rawTar(release)));
  const scanned = await scanFile(archive, 'gzip');
  const differ = (index: number, change: Partial<TarEntry>) => scanned.map((entry, i) => (i === index ? { ...entry, ...change } : entry));
  const cases: Array<[string, TarEntry[], RegExp]> = [
    ['another path', differ(2, { path: 'releases/1.0.0/other.json' }), /entry 3 as File 'releases\/1\.0\.0\/manifest\.json' \(2 bytes\) where the scan read File 'releases\/1\.0\.0\/other\.json'/],
    ['another type', differ(2, { type: 'Directory' }), /entry 3/],
    ['another size', differ(2, { size: 3 }), /entry 3/],
    ['an entry fewer', scanned.slice(0, 3), /entry 4 as Directory 'releases\/1\.0\.0\/lib' \(0 bytes\) where the scan read no entry/],
    ['an entry more', [...scanned, { path: 'releases/1.0.0/late', type: 'File', size: 1 }], /met 5 entries where the scan read 6/],
  ];
  for (const [name, list, message] of cases) {
    const { dest, error } = await extract(archive, 'releases/1.0.0', list);
    assert.equal(error?.code, 'E_TAR_AMBIGUOUS', `${name}: ${error?.message}`);
    assert.match(error!.message, message, name);
    // What came before the difference may be there; nothing from it on.
    const written = await filesBelow(dest);
    if (name !== 'an entry more') assert.ok(!written.includes('releases/1.0.0/lib/a.mjs'), `${name}: extraction went on: ${written.join(', ')}`);
  }
  // A type node-tar skips without asking (a tape volume label): the scan would have refused it.
  const skipped = await writeTemp('r.tar.gz', gzipSync(rawTar([...release.slice(0, 3), { path: 'VOLUME', typeflag: 'V' }, ...release.slice(3)])));
  const { dest, error } = await extract(skipped, 'releases/1.0.0', scanned);
  assert.equal(error?.code, 'E_TAR_AMBIGUOUS', error?.message);
  assert.match(error!.message, /skipped an entry 'VOLUME'/);
  assert.ok(!(await filesBelow(dest)).includes('releases/1.0.0/lib/a.mjs'));
});

test('an archive node-tar cannot read after the scan read it is refused as ambiguous; other failures go up as they are', async () => {
  // A header node-tar's strict mode refuses (a bad checksum), behind a list that says it is fine.
  const bad = tarHeader(file('releases/1.0.0/x'), 1);
  bad[148] = bad[148]! ^ 1;
  const archive = await writeTemp('r.tar.gz', gzipSync(Buffer.concat([rawTar(release.slice(0, 2)).subarray(0, -1024), bad, Buffer.from('x'), padding(1), Buffer.alloc(1024)])));
  const scanned: TarEntry[] = [
    { path: 'releases', type: 'Directory', size: 0 },
    { path: 'releases/1.0.0', type: 'Directory', size: 0 },
    { path: 'releases/1.0.0/x', type: 'File', size: 1 },
  ];
  const { error } = await extract(archive, 'releases/1.0.0', scanned);
  assert.equal(error?.code, 'E_TAR_AMBIGUOUS', error?.message);
  assert.match(error!.message, /node-tar could not read what the scan read/);
  // A disk that fills after the first bytes (the test-only fault point): the error is the disk's.
  const full = await writeTemp('r.tar.gz', gzipSync(rawTar(release)));
  const previous = process.env.THESEUS_FAULTS;
  process.env.THESEUS_FAULTS = 'unpack-write-after:1000';
  try {
    const { dest, error: diskError } = await extract(full, 'releases/1.0.0');
    assert.equal(diskError?.code, 'ENOSPC', diskError?.message);
    assert.equal(await readFile(join(dest, 'releases/1.0.0/manifest.json'), 'utf8'), '{}', 'the files before it were written');
  } finally {
    if (previous === undefined) delete process.env.THESEUS_FAULTS;
    else process.env.THESEUS_FAULTS = previous;
  }
  // Full before the first byte.
  process.env.THESEUS_FAULTS = 'unpack-write';
  try {
    const { dest, error: diskError } = await extract(full, 'releases/1.0.0');
    assert.equal(diskError?.code, 'ENOSPC');
    assert.deepEqual(await readdir(dest), [], 'nothing written');
  } finally {
    if (previous === undefined) delete process.env.THESEUS_FAULTS;
    else process.env.THESEUS_FAULTS = previous;
  }
});

/** `handle`, except that every read fails as a failing device would. */
function failingReads(handle: FileHandle): FileHandle {
  return new Proxy(handle, {
    get(target, key) {
      if (key !== 'read') return Reflect.get(target, key, target);
      return async () => {
        throw Object.assign(new Error('EIO: i/o error, read'), { code: 'EIO' });
      };
    },
  });
}

test('a read that fails is reported, by the scan as an unreadable archive and by the extraction as it is', async () => {
  const archive = await writeTemp('r.tar.gz', gzipSync(rawTar(release)));
  const scanned = await scanFile(archive, 'gzip');
  await withFile(archive, async (handle) => {
    for (const format of ['tar', 'gzip'] as const) {
      await assert.rejects(scanArchive(archive, failingReads(handle), format, DEFAULT_TAR_LIMITS), (error: Error & { code: string }) => {
        assert.equal(error.code, 'E_TAR_CORRUPT', format);
        assert.match(error.message, /EIO/, format);
        return true;
      });
    }
    const dest = join(await tempDir('theseus-extract-'), 'staging');
    await assert.rejects(extractScanned(archive, failingReads(handle), dest, scanned, 'releases/1.0.0'), { code: 'EIO' });
  });
});
