// The installer (kernel/release/install.ts) with releases written by hand, without a build: what
// a release folder may hold and how each departure from its manifest is refused, how a source is
// found (folder, archive, installed version) and what its name promises, what an install leaves
// behind and records, and the clean-ups (stale staging folders, a discarded install).
// install.test.ts installs the example's built releases; this file is the fast one, which
// `npm run mutate -- install` runs once per mutant.

import { tempDir } from '../temp-dirs.ts';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, generateKeyPairSync, sign } from 'node:crypto';
import { cp, mkdir, readdir, readFile, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { discardInstall, installRelease, removeStaleStaging, verifyReleaseDir } from '../../kernel/release/install.ts';
import { readRegistry, withCurrent, writeRegistry } from '../../kernel/release/registry.ts';
import { packTarball } from '../../kernel/release/tarball.ts';

const MiB = 1024 * 1024;
const sha256 = (data: string | Buffer) => createHash('sha256').update(data).digest('hex');

const defaultFiles = { 'services/a/a.mjs': 'export default {};\n', 'static/index.html': '<p>hi</p>', 'plan.json': '' };

/** The manifest of a release listing `files` (path -> contents); `plan.json` gets a valid plan. */
function manifestFor(version: string, files: Record<string, string | Buffer>): Record<string, any> {
  return {
    schema: 1,
    app: 'hand',
    version,
    protocol: 1,
    node: '>=20',
    drainTimeoutMs: 1000,
    probationMs: 0,
    checkpointIntervalMs: 0,
    checkpointEveryChanges: 0,
    maxRestarts: 0,
    restartWindowMs: 1000,
    hooks: { preStart: [], postStart: [], preStop: [], postStop: [], preUpgrade: [], postUpgrade: [] },
    runtimeConfig: {},
    services: {},
    files: Object.fromEntries(Object.entries(files).map(([path, data]) => [path, { sha256: sha256(data), size: Buffer.byteLength(data) }])),
  };
}

function planFor(version: string): string {
  return JSON.stringify({ schema: 1, from: null, to: version, services: {}, warnings: [] });
}

/**
 * Writes a release folder by hand at `dir`: its files, a plan, and a manifest listing them.
 * `edit` may change the manifest before it is written.
 */
async function handRelease(dir: string, version: string, files: Record<string, string | Buffer> = defaultFiles, edit?: (manifest: Record<string, any>) => void): Promise<string> {
  const contents = { ...files, ...('plan.json' in files ? { 'plan.json': planFor(version) } : {}) };
  for (const [path, data] of Object.entries(contents)) {
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), data);
  }
  const manifest = manifestFor(version, contents);
  edit?.(manifest);
  await writeFile(join(dir, 'manifest.json'), JSON.stringify(manifest, null, 2));
  return dir;
}

/** A .tar.gz (or .tar) named `name`, holding a hand-made release under releases/<version>/ and `extra` archive paths. */
async function handTarball(name: string, version: string, extra: Record<string, string> = {}, options: { gzip?: boolean } = {}): Promise<string> {
  const image = await tempDir('theseus-image-');
  await handRelease(join(image, 'releases', version), version);
  for (const [path, data] of Object.entries(extra)) {
    await mkdir(dirname(join(image, path)), { recursive: true });
    await writeFile(join(image, path), data);
  }
  const paths = (await readdir(image, { recursive: true, withFileTypes: true })).filter((entry) => entry.isFile()).map((entry) => join(entry.parentPath, entry.name).slice(image.length + 1));
  const out = join(await tempDir('theseus-archive-'), name);
  if (options.gzip === false) {
    const { create } = await import('tar');
    await create({ cwd: image, file: out, portable: true }, paths.sort());
  } else {
    await packTarball(image, paths, out);
  }
  return out;
}

async function refusedCode(promise: Promise<unknown>): Promise<string> {
  return promise.then(
    () => 'installed',
    (error: Error & { code?: string }) => error.code ?? `uncoded: ${error.message}`,
  );
}

async function releasesOf(root: string): Promise<string[]> {
  return (await readdir(join(root, 'releases'))).sort();
}

test('a hand-made release folder verifies: its manifest, plan and manifest hash', async () => {
  const dir = await handRelease(await tempDir('theseus-hand-'), '1.0.0');
  const verified = await verifyReleaseDir(dir);
  assert.equal(verified.manifest.version, '1.0.0');
  assert.deepEqual(JSON.parse(JSON.stringify(verified.plan)), JSON.parse(planFor("1.0.0")));
  assert.equal(verified.manifestSha256, sha256(await readFile(join(dir, 'manifest.json'))));
  // Without plan.json in the manifest there is no plan.
  const noPlan = await handRelease(await tempDir('theseus-hand-'), '1.0.0', { 'a.mjs': 'x' });
  assert.equal((await verifyReleaseDir(noPlan)).plan, null);
});

test('a release folder that departs from its manifest is refused, each way with its code', async () => {
  const cases: Array<[string, (dir: string) => Promise<unknown>, string]> = [
    ['a manifest that is not JSON', (dir) => writeFile(join(dir, 'manifest.json'), '{"schema": 1,'), 'E_MANIFEST_INVALID'],
    ['an unlisted file', (dir) => writeFile(join(dir, 'services/a/extra.mjs'), ''), 'E_RELEASE_EXTRA_FILE'],
    ['an unlisted tarball in a subfolder', (dir) => writeFile(join(dir, 'services/a/x.tar.gz'), ''), 'E_RELEASE_EXTRA_FILE'],
    ['a listed file renamed', (dir) => rename(join(dir, 'static/index.html'), join(dir, 'static/index.htm')), 'E_RELEASE_EXTRA_FILE'],
    ['a listed file changed', (dir) => writeFile(join(dir, 'static/index.html'), '<p>ho</p>'), 'E_RELEASE_HASH_MISMATCH'],
    ['a listed file grown', (dir) => writeFile(join(dir, 'static/index.html'), '<p>hi</p> '), 'E_RELEASE_HASH_MISMATCH'],
    ['a symbolic link', (dir) => symlink('/etc/passwd', join(dir, 'static/passwd')), 'E_TAR_SYMLINK'],
    ['a symbolic link in place of a listed file', (dir) => rename(join(dir, 'static/index.html'), join(dir, 'elsewhere')).then(() => symlink(join(dir, 'elsewhere'), join(dir, 'static/index.html'))), 'E_TAR_SYMLINK'],
    ['a FIFO', async (dir) => assert.equal(spawnSync('mkfifo', [join(dir, 'static/pipe')]).status, 0), 'E_TAR_DEVICE'],
    ['plan.json changed', (dir) => writeFile(join(dir, 'plan.json'), '{}'), 'E_RELEASE_HASH_MISMATCH'],
  ];
  for (const [name, tamper, code] of cases) {
    const dir = await handRelease(await tempDir('theseus-hand-'), '1.0.0');
    await tamper(dir);
    assert.equal(await refusedCode(verifyReleaseDir(dir)), code, name);
  }
  // Only a missing file, with nothing else in its place, is a missing file.
  const missing = await handRelease(await tempDir('theseus-hand-'), '1.0.0');
  await rm(join(missing, 'static/index.html'));
  assert.equal(await refusedCode(verifyReleaseDir(missing)), 'E_RELEASE_MISSING_FILE');
  const noManifest = await tempDir('theseus-hand-');
  assert.equal(await refusedCode(verifyReleaseDir(noManifest)), 'E_RELEASE_MISSING_FILE');
  // The manifest lists the right hash but another size: the size is checked on its own.
  const wrongSize = await handRelease(await tempDir('theseus-hand-'), '1.0.0', defaultFiles, (manifest) => (manifest.files['static/index.html'].size += 1));
  assert.equal(await refusedCode(verifyReleaseDir(wrongSize)), 'E_RELEASE_HASH_MISMATCH');
  // A plan that is listed with its hash but is not a plan.
  const badPlan = await handRelease(await tempDir('theseus-hand-'), '1.0.0', { 'a.mjs': 'x' });
  await writeFile(join(badPlan, 'plan.json'), '{"schema": 1}');
  const manifest = JSON.parse(await readFile(join(badPlan, 'manifest.json'), 'utf8'));
  manifest.files['plan.json'] = { sha256: sha256('{"schema": 1}'), size: 13 };
  await writeFile(join(badPlan, 'manifest.json'), JSON.stringify(manifest));
  assert.equal(await refusedCode(verifyReleaseDir(badPlan)), 'E_MANIFEST_INVALID');
  // A listed "file" that is a folder.
  const folder = await handRelease(await tempDir('theseus-hand-'), '1.0.0', { 'a.mjs': 'x' }, (m) => (m.files.empty = { sha256: sha256(''), size: 0 }));
  await mkdir(join(folder, 'empty'));
  assert.notEqual(await refusedCode(verifyReleaseDir(folder)), 'installed');
});

test('beside its files, a release folder may hold only its manifest, its signature, and (outside archives) its own tarball', async () => {
  const dir = await handRelease(await tempDir('theseus-hand-'), '1.0.0');
  for (const name of ['hand-1.0.0.tar.gz', 'hand.tgz', 'hand.tar']) await writeFile(join(dir, name), 'archive');
  await writeFile(join(dir, 'manifest.sig'), 'unchecked without trusted keys');
  assert.equal((await verifyReleaseDir(dir)).manifest.version, '1.0.0');
  assert.equal(await refusedCode(verifyReleaseDir(dir, undefined, { allowTarballs: false })), 'E_RELEASE_EXTRA_FILE');
  for (const name of ['hand.tar.gz.bak', 'hand.gz', 'manifest.json.sig']) {
    const other = await handRelease(await tempDir('theseus-hand-'), '1.0.0');
    await writeFile(join(other, name), 'x');
    assert.equal(await refusedCode(verifyReleaseDir(other)), 'E_RELEASE_EXTRA_FILE', name);
  }
});

test('a manifest of exactly 16 MiB is read; one byte more is refused before it is read', async () => {
  const dir = await handRelease(await tempDir('theseus-hand-'), '1.0.0', { 'a.mjs': 'x' });
  const text = await readFile(join(dir, 'manifest.json'), 'utf8');
  await writeFile(join(dir, 'manifest.json'), text.padEnd(16 * MiB, ' '));
  assert.equal((await verifyReleaseDir(dir)).manifest.version, '1.0.0');
  await writeFile(join(dir, 'manifest.json'), text.padEnd(16 * MiB + 1, ' '));
  await assert.rejects(verifyReleaseDir(dir), (error: Error & { code: string }) => {
    assert.equal(error.code, 'E_MANIFEST_INVALID');
    assert.match(error.message, /16777217 bytes, over the limit of 16777216/);
    return true;
  });
});

test('with trusted keys in the deploy root, only a release signed by one of them verifies', async () => {
  const root = await tempDir('theseus-trusting-');
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  await mkdir(join(root, 'trusted-keys'));
  await writeFile(join(root, 'trusted-keys', 'ours.pem'), publicKey.export({ type: 'spki', format: 'pem' }));
  const dir = await handRelease(await tempDir('theseus-hand-'), '1.0.0');
  assert.equal(await refusedCode(verifyReleaseDir(dir, root)), 'E_RELEASE_UNSIGNED');
  const text = await readFile(join(dir, 'manifest.json'));
  await writeFile(join(dir, 'manifest.sig'), `${sign(null, text, privateKey).toString('base64')}\n`);
  assert.equal((await verifyReleaseDir(dir, root)).manifest.version, '1.0.0');
  // Installed, the signature goes with it, and the installed copy verifies in the same root.
  const installed = await installRelease(root, dir);
  assert.deepEqual((await readdir(installed.dir)).sort(), ['manifest.json', 'manifest.sig', 'plan.json', 'services', 'static']);
  await verifyReleaseDir(installed.dir, root);
});

test('installing a folder copies what the manifest lists, records it, reports its steps, and is a no-op the second time', async () => {
  const root = await tempDir('theseus-root-');
  const source = await handRelease(await tempDir('theseus-hand-'), '1.0.0');
  await writeFile(join(source, 'hand-1.0.0.tar.gz'), 'the release tarball, not copied');
  const steps: string[] = [];
  const installed = await installRelease(root, source, {
    onStep: (step, ms) => {
      assert.ok(Number.isFinite(ms) && ms >= 0, `${step} took ${ms} ms`);
      steps.push(step);
    },
  });
  assert.deepEqual(steps, ['unpack', 'verify']);
  assert.equal(installed.version, '1.0.0');
  assert.equal(installed.dir, join(root, 'releases', '1.0.0'));
  assert.equal(installed.alreadyInstalled, false);
  assert.deepEqual(JSON.parse(JSON.stringify(installed.plan)), JSON.parse(planFor("1.0.0")));
  assert.equal(installed.manifest.app, 'hand');
  const manifestHash = sha256(await readFile(join(source, 'manifest.json')));
  assert.equal(installed.manifestSha256, manifestHash);
  assert.deepEqual(await releasesOf(root), ['1.0.0', 'RELEASES'], 'no staging folder left');
  assert.deepEqual((await readdir(installed.dir, { recursive: true })).map(String).sort(), ['manifest.json', 'plan.json', 'services', 'services/a', 'services/a/a.mjs', 'static', 'static/index.html']);
  assert.equal(await readFile(join(installed.dir, 'services/a/a.mjs'), 'utf8'), defaultFiles['services/a/a.mjs']);
  const registry = await readRegistry(root);
  assert.deepEqual(registry.releases.map(({ version, status, manifestSha256 }) => ({ version, status, manifestSha256 })), [{ version: '1.0.0', status: 'unpacked', manifestSha256: manifestHash }]);
  // Again, from the same folder or by its version: nothing new, the registry not rewritten.
  const registryText = await readFile(join(root, 'releases', 'RELEASES'), 'utf8');
  const before = (await stat(join(root, 'releases', 'RELEASES'))).ino;
  for (const again of [source, '1.0.0', installed.dir]) {
    const second = await installRelease(root, again);
    assert.equal(second.alreadyInstalled, true, again);
    assert.equal(second.dir, installed.dir);
    assert.equal(second.manifestSha256, manifestHash);
    assert.deepEqual(second.plan, installed.plan);
  }
  assert.equal(await readFile(join(root, 'releases', 'RELEASES'), 'utf8'), registryText);
  assert.equal((await stat(join(root, 'releases', 'RELEASES'))).ino, before, 'the registry was not written again');
  // Once it has run, it is no longer merely unpacked, and installing it again keeps that.
  await writeRegistry(root, withCurrent(registry, '1.0.0'));
  assert.equal((await installRelease(root, source)).alreadyInstalled, true);
  assert.equal((await readRegistry(root)).releases[0]!.status, 'current');
});

test('another release of an installed version conflicts, a tampered installed copy is refused, and a version folder holding something else is not overwritten', async () => {
  const root = await tempDir('theseus-root-');
  await installRelease(root, await handRelease(await tempDir('theseus-hand-'), '1.0.0'));
  const other = await handRelease(await tempDir('theseus-hand-'), '1.0.0', { ...defaultFiles, 'static/index.html': 'other' });
  assert.equal(await refusedCode(installRelease(root, other)), 'E_RELEASE_CONFLICT');
  // A corrupted installed copy is not taken for the same release.
  await writeFile(join(root, 'releases', '1.0.0', 'static', 'index.html'), 'tampered');
  assert.equal(await refusedCode(installRelease(root, await handRelease(await tempDir('theseus-hand-'), '1.0.0'))), 'E_RELEASE_HASH_MISMATCH');
  // A version folder holding something other than a release or its tarball is not overwritten.
  const squatted = await tempDir('theseus-root-');
  await mkdir(join(squatted, 'releases', '2.0.0'), { recursive: true });
  await writeFile(join(squatted, 'releases', '2.0.0', 'notes.txt'), 'mine');
  await assert.rejects(installRelease(squatted, await handRelease(await tempDir('theseus-hand-'), '2.0.0')), (error: Error & { code: string }) => {
    assert.equal(error.code, 'E_RELEASE_CONFLICT');
    assert.match(error.message, /notes\.txt/);
    return true;
  });
  assert.deepEqual(await readdir(join(squatted, 'releases', '2.0.0')), ['notes.txt']);
  assert.deepEqual((await releasesOf(squatted)).filter((name) => name.startsWith('.')), [], 'no staging folder left');
});

test('a folder named for a version must hold that version; a name that is not a version promises nothing', async () => {
  const root = await tempDir('theseus-root-');
  const parent = await tempDir('theseus-named-');
  const misnamed = await handRelease(join(parent, '2.0.0'), '1.0.0');
  await assert.rejects(installRelease(root, misnamed), (error: Error & { code: string }) => {
    assert.equal(error.code, 'E_RELEASE_VERSION_MISMATCH');
    assert.match(error.message, /named for release 2\.0\.0 but holds release 1\.0\.0/);
    return true;
  });
  assert.deepEqual((await releasesOf(root)).filter((name) => name !== 'RELEASES'), [], 'nothing installed');
  for (const name of ['release', 'v1.0.0', '1.0', '01.0.0']) {
    assert.equal((await installRelease(await tempDir('theseus-root-'), await handRelease(join(parent, name), '1.0.0'))).version, '1.0.0', name);
  }
});

test('an archive installs its one release folder only, whatever else it holds; its name may promise a version', async () => {
  const root = await tempDir('theseus-root-');
  const archive = await handTarball('hand-1.0.0.tar.gz', '1.0.0', { 'README.md': 'not part of the release', 'lib/kernel.mjs': 'nor this', 'releases/1.0.0-notes/x': 'nor this' });
  const steps: string[] = [];
  const installed = await installRelease(root, archive, { onStep: (step) => steps.push(step) });
  assert.deepEqual(steps, ['unpack', 'verify']);
  assert.equal(installed.version, '1.0.0');
  assert.deepEqual(await releasesOf(root), ['1.0.0', 'RELEASES']);
  assert.deepEqual((await readdir(installed.dir, { recursive: true })).map(String).sort(), ['manifest.json', 'plan.json', 'services', 'services/a', 'services/a/a.mjs', 'static', 'static/index.html']);
  // A plain tar, named .tar.gz or not: read by its bytes.
  for (const name of ['hand-2.0.0.tar', 'hand-2.0.0.tar.gz']) {
    const plain = await handTarball(name, '2.0.0', {}, { gzip: false });
    assert.equal((await installRelease(await tempDir('theseus-root-'), plain)).version, '2.0.0', name);
  }
  // What a name promises: <app>-<version>, <app>_v<version>, <version> alone; a valid semver only.
  const holding100 = await handTarball('release.tar.gz', '1.0.0');
  const renamed = async (name: string) => {
    const file = join(await tempDir('theseus-renamed-'), name);
    await cp(holding100, file);
    return refusedCode(installRelease(await tempDir('theseus-root-'), file));
  };
  for (const name of ['hand-2.0.0.tar.gz', 'hand_v2.0.0.tgz', '2.0.0.tar', 'hand-1.0.0-rc.1.tar.gz']) {
    assert.equal(await renamed(name), 'E_RELEASE_VERSION_MISMATCH', name);
  }
  for (const name of ['hand2.0.0.tar.gz', 'hand-02.0.0.tar.gz', 'hand-1.0.0.tar.gz']) {
    assert.equal(await renamed(name), 'installed', name);
  }
});

test('an archive must hold exactly one release manifest, at releases/<version>/manifest.json', async () => {
  const image = (extra: Record<string, string>) => handTarball('x.tar.gz', '1.0.0', extra);
  const two = await image({ 'releases/2.0.0/manifest.json': '{}' });
  const none = join(await tempDir('theseus-archive-'), 'none.tar.gz');
  const noneImage = await tempDir('theseus-image-');
  await mkdir(join(noneImage, 'releases', '1.0.0', 'sub'), { recursive: true });
  await writeFile(join(noneImage, 'releases', '1.0.0', 'sub', 'manifest.json'), '{}');
  await writeFile(join(noneImage, 'manifest.json'), '{}');
  await packTarball(noneImage, ['manifest.json', 'releases/1.0.0/sub/manifest.json'], none);
  for (const [name, archive, count] of [['two releases', two, 2], ['manifests elsewhere only', none, 0]] as const) {
    const root = await tempDir('theseus-root-');
    await assert.rejects(installRelease(root, archive), (error: Error & { code: string }) => {
      assert.equal(error.code, 'E_MANIFEST_INVALID', name);
      assert.match(error.message, new RegExp(`holds ${count} release manifests`), name);
      return true;
    });
    assert.deepEqual(await releasesOf(root), [], `${name}: nothing written`);
  }
});

test('sources: an installed version, a folder holding one tarball, and what is not a release', async () => {
  const root = await tempDir('theseus-root-');
  // The seed's way: the tarball copied into releases/<version>/, installed by its version; the
  // tarball stays with the release.
  await mkdir(join(root, 'releases', '1.0.0'), { recursive: true });
  await cp(await handTarball('hand-1.0.0.tar.gz', '1.0.0'), join(root, 'releases', '1.0.0', 'hand-1.0.0.tar.gz'));
  const installed = await installRelease(root, '1.0.0');
  assert.equal(installed.alreadyInstalled, false);
  assert.deepEqual((await readdir(installed.dir)).sort(), ['hand-1.0.0.tar.gz', 'manifest.json', 'plan.json', 'services', 'static']);
  // A tarball in a folder named for another version.
  await mkdir(join(root, 'releases', '3.0.0'));
  await cp(await handTarball('release.tar.gz', '2.0.0'), join(root, 'releases', '3.0.0', 'release.tar.gz'));
  assert.equal(await refusedCode(installRelease(root, '3.0.0')), 'E_RELEASE_VERSION_MISMATCH');
  // A folder with no manifest: one tarball is the release; none or two are not a release.
  const folders = await tempDir('theseus-sources-');
  await mkdir(join(folders, 'empty'));
  await mkdir(join(folders, 'two'));
  await writeFile(join(folders, 'two', 'a.tar.gz'), 'x');
  await writeFile(join(folders, 'two', 'b.tgz'), 'x');
  await mkdir(join(folders, 'other'));
  await writeFile(join(folders, 'other', 'notes.txt'), 'x');
  for (const [name, count] of [['empty', 'no'], ['two', '2'], ['other', 'no']] as const) {
    await assert.rejects(installRelease(root, join(folders, name)), (error: Error & { code: string }) => {
      assert.equal(error.code, 'E_RELEASE_NOT_A_RELEASE', name);
      assert.match(error.message, new RegExp(`holding ${count} release archives`), name);
      return true;
    });
  }
  await mkdir(join(folders, 'one'));
  await cp(await handTarball('release.tar.gz', '4.0.0'), join(folders, 'one', 'release.tgz'));
  assert.equal((await installRelease(root, join(folders, 'one'))).version, '4.0.0');
  // Files that are not archives, and what is neither a file nor a folder.
  await writeFile(join(folders, 'zip.tar.gz'), Buffer.from([0x50, 0x4b, 0x03, 0x04, 0, 0]));
  assert.equal(await refusedCode(installRelease(root, join(folders, 'zip.tar.gz'))), 'E_RELEASE_NOT_A_RELEASE');
  assert.equal(spawnSync('mkfifo', [join(folders, 'fifo')]).status, 0);
  await assert.rejects(installRelease(root, join(folders, 'fifo')), /neither a folder nor a regular file/);
  // A bare version not installed: the versions installed are listed, and nothing else in releases/.
  await mkdir(join(root, 'releases', 'not-a-version'));
  await assert.rejects(installRelease(root, '9.9.9'), (error: Error & { code: string }) => {
    assert.equal(error.code, 'E_RELEASE_NOT_INSTALLED');
    for (const version of ['1.0.0', '3.0.0', '4.0.0']) assert.ok(error.message.includes(version), `${version} is listed: ${error.message}`);
    assert.doesNotMatch(error.message, /not-a-version|RELEASES/);
    return true;
  });
  await assert.rejects(installRelease(root, join(folders, 'missing.tar.gz')), { code: 'E_RELEASE_NOT_FOUND' });
  // A version that is not installed, in a root that has none.
  assert.equal(await refusedCode(installRelease(await tempDir('theseus-root-'), '1.0.0')), 'E_RELEASE_NOT_INSTALLED');
  // A releases/<version>/ folder whose name is a version, reached as a folder, holding a release of another version.
  await handRelease(join(root, 'releases', '5.0.0'), '5.0.1');
  assert.equal(await refusedCode(installRelease(root, '5.0.0')), 'E_RELEASE_VERSION_MISMATCH');
});

test('a failed install leaves no staging folder, and an error that is not a refusal is said as a failed install', async () => {
  const root = await tempDir('theseus-root-');
  const source = await handRelease(await tempDir('theseus-hand-'), '1.0.0', { 'a.mjs': 'x' }, (m) => (m.files.empty = { sha256: sha256(''), size: 0 }));
  await mkdir(join(source, 'empty'));
  await assert.rejects(installRelease(root, source), (error: Error & { code: string }) => {
    assert.equal(error.code, 'E_INSTALL_FAILED');
    assert.ok(error.message.includes(source), error.message);
    return true;
  });
  assert.deepEqual(await releasesOf(root), []);
  // A refusal after the copy began: the copy is removed with its staging folder.
  const tampered = await handRelease(await tempDir('theseus-hand-'), '1.0.0');
  await writeFile(join(tampered, 'static/index.html'), 'changed');
  assert.equal(await refusedCode(installRelease(root, tampered)), 'E_RELEASE_HASH_MISMATCH');
  assert.deepEqual(await releasesOf(root), []);
});

test('removeStaleStaging removes the folders of dead or recycled installers, keeps live ones, and says what it removed', async () => {
  const root = await tempDir('theseus-staging-');
  const releases = join(root, 'releases');
  const names = [`.staging-${process.ppid}-live`, '.staging-4194400-dead', `.staging-${process.pid}-recycled`, '.staging-noprocess', '.staging-12x-odd'];
  for (const name of names) await mkdir(join(releases, name, 'releases'), { recursive: true });
  await mkdir(join(releases, '1.0.0'));
  await mkdir(join(releases, 'staging-4194400-not-ours'));
  const lines: string[] = [];
  const removed = await removeStaleStaging(root, (line) => lines.push(line));
  assert.deepEqual(removed.sort(), names.slice(1).sort());
  assert.deepEqual((await readdir(releases)).sort(), [`.staging-${process.ppid}-live`, '1.0.0', 'staging-4194400-not-ours']);
  assert.equal(lines.length, 1);
  assert.match(lines[0]!, /^removed 4 staging folders left by an interrupted install: /);
  for (const name of names.slice(1)) assert.ok(lines[0]!.includes(join(releases, name)), `${name} is named`);
  // Nothing to remove: nothing said. One: said in the singular.
  assert.deepEqual(await removeStaleStaging(root, (line) => lines.push(line)), []);
  assert.equal(lines.length, 1);
  await mkdir(join(releases, '.staging-4194401-dead'));
  await removeStaleStaging(root, (line) => lines.push(line));
  assert.match(lines[1]!, /^removed 1 staging folder left/);
  assert.deepEqual(await removeStaleStaging(await tempDir('theseus-no-releases-'), (line) => lines.push(line)), []);
});

test('discardInstall removes a release installed for a refused request, unless it ran or is more than unpacked', async () => {
  const root = await tempDir('theseus-root-');
  const source = await handRelease(await tempDir('theseus-hand-'), '1.0.0');
  await installRelease(root, source);
  const ran = await discardInstall(root, '1.0.0', true);
  assert.match(ran, /stays installed as unpacked/);
  assert.match(ran, /'kernel remove 1\.0\.0'/);
  assert.deepEqual((await readRegistry(root)).releases.map((entry) => entry.version), ['1.0.0']);
  const removed = await discardInstall(root, '1.0.0', false);
  assert.match(removed, /was removed again\.$/);
  assert.deepEqual((await readRegistry(root)).releases, []);
  assert.deepEqual(await releasesOf(root), ['RELEASES']);
  assert.match(await discardInstall(root, '1.0.0', false), /stays installed \(not in the registry\)/);
  // A seeded tarball stays where it was, and the rest of the folder goes.
  await mkdir(join(root, 'releases', '2.0.0'));
  await cp(await handTarball('hand-2.0.0.tar.gz', '2.0.0'), join(root, 'releases', '2.0.0', 'hand-2.0.0.tar.gz'));
  await installRelease(root, '2.0.0');
  assert.match(await discardInstall(root, '2.0.0', false), /its tarball stays in .*2\.0\.0/);
  assert.deepEqual(await readdir(join(root, 'releases', '2.0.0')), ['hand-2.0.0.tar.gz']);
  // Current releases stay.
  await installRelease(root, '2.0.0');
  await writeRegistry(root, withCurrent(await readRegistry(root), '2.0.0'));
  assert.match(await discardInstall(root, '2.0.0', false), /stays installed \(current\)/);
  assert.equal((await stat(join(root, 'releases', '2.0.0', 'manifest.json'))).isFile(), true);
  // A registry that cannot be read: nothing removed, and the way to do it said.
  await writeFile(join(root, 'releases', 'RELEASES'), '{ not json');
  assert.match(await discardInstall(root, '2.0.0', false), /could not be removed .*'kernel remove 2\.0\.0'/);
});
