// `kernel upgrade` against hostile and mistaken releases, through the real CLI: a deployed
// tarball's own bin/kernel (its bundled kernel and unpack worker), away from the repo. What an
// attacker's check once got installed with exit 0 is refused with its code, nothing lands outside
// the deploy root, a refused swap leaves nothing installed behind, and a staging folder left by a
// SIGKILL mid-unpack is removed at the next boot.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { cp, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { after, before, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { create, extract } from 'tar';
import { sha256 } from '../../kernel/release/fs-atomic.ts';
import { discardInstall, installRelease, removeStaleStaging } from '../../kernel/release/install.ts';
import { readRegistry } from '../../kernel/release/registry.ts';
import { killAndWait, root as repo, swapJson } from '../helpers.ts';
import { sharedExamples, tempDir } from './helpers.ts';

const built = sharedExamples();
const started: Array<() => void> = [];

after(() => {
  for (const stop of started) stop();
});

/** bin/kernel of a deploy root, with a bare environment: nothing is found through the checkout. */
function deployed(deployRoot: string, ...args: string[]) {
  return spawnSync(join(deployRoot, 'bin', 'kernel'), args, { cwd: deployRoot, encoding: 'utf8', timeout: 120_000, env: { PATH: `${join(process.execPath, '..')}:/usr/bin:/bin` } });
}

/** `kernel upgrade <source> --json`: its exit status and the error code it printed, if any. */
function upgrade(deployRoot: string, source: string): { status: number | null; code: string | null; output: string } {
  const run = deployed(deployRoot, 'upgrade', source, '--json');
  const output = run.stdout + run.stderr;
  const parsed = (run.stdout ? swapJson(run.stdout) : {}) as { error?: { code: string } };
  return { status: run.status, code: parsed.error?.code ?? null, output };
}

/** A release's manifest with one more `files` entry. */
async function withListedFile(manifestFile: string, key: string, contents: Buffer): Promise<void> {
  const manifest = JSON.parse(await readFile(manifestFile, 'utf8')) as { files: Record<string, unknown> };
  manifest.files[key] = { sha256: sha256(contents), size: contents.length };
  await writeFile(manifestFile, JSON.stringify(manifest, null, 2));
}

/** One deployed kernel, started once, for the refusals below (each a test of its own). */
let deployRoot = '';
const outside = tempDir('theseus-outside-');

before(async () => {
  const { results } = await built;
  deployRoot = await tempDir('theseus-upgrade-');
  await extract({ file: results[0]!.tarball, cwd: deployRoot });
  const start = deployed(deployRoot, 'start');
  assert.equal(start.status, 0, start.stderr + start.stdout);
  started.push(() => deployed(deployRoot, 'stop'));
});

test("1. a release folder listing a '../' key with the right hash is refused, and nothing lands outside the deploy root", async () => {
  const { results } = await built;
  // Read from the deep source folder, the key reaches a payload the attacker placed; written from
  // the (shallower) staging folder, the same key lands in `outside`, far from the deploy root.
  const sandbox = await tempDir('theseus-attack-');
  const source = join(sandbox, 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'release');
  await cp(results[1]!.dir, source, { recursive: true });
  const up = relative(join(deployRoot, 'releases', '.staging-x'), '/');
  const key = `${up}/${(await outside).slice(1)}/planted.txt`;
  const payload = Buffer.from('written far outside the deploy root\n');
  const reachedFromSource = join(source, key);
  await mkdir(join(reachedFromSource, '..'), { recursive: true });
  await writeFile(reachedFromSource, payload);
  await withListedFile(join(source, 'manifest.json'), key, payload);
  const escape = upgrade(deployRoot, source);
  assert.deepEqual(await readdir(await outside), [], 'the planted file was created outside the deploy root');
  assert.equal(escape.status, 1, escape.output);
  assert.equal(escape.code, 'E_MANIFEST_INVALID', escape.output);
});

test("2. a tarball whose manifest lists '../' x 12 and a file elsewhere on the machine is refused", async () => {
  const { results } = await built;
  // Its verification read the file outside the release, the hash matched, and it was installed.
  const elsewhere = join(await tempDir('theseus-system-'), 'hostname');
  await writeFile(elsewhere, 'a system file\n');
  const image = await tempDir('theseus-image-');
  await extract({ file: results[1]!.tarball, cwd: image });
  await withListedFile(join(image, 'releases', '0.2.0', 'manifest.json'), `${'../'.repeat(12)}${elsewhere.slice(1)}`, await readFile(elsewhere));
  const listed = (await readdir(image, { recursive: true, withFileTypes: true })).filter((entry) => entry.isFile()).map((entry) => relative(image, join(entry.parentPath, entry.name)));
  const climbing = join(await tempDir('theseus-climbing-'), 'sequence-0.2.0.tar.gz');
  await create({ cwd: image, file: climbing, gzip: true, portable: true }, listed.sort());
  const climbed = upgrade(deployRoot, climbing);
  assert.equal(climbed.status, 1, climbed.output);
  assert.equal(climbed.code, 'E_MANIFEST_INVALID', climbed.output);
});

test('5. a tarball named for 0.3.0 that holds 0.2.0 is refused', async () => {
  const { results } = await built;
  const misnamed = join(await tempDir('theseus-misnamed-'), 'sequence-0.3.0.tar.gz');
  await cp(results[1]!.tarball, misnamed);
  const mismatch = upgrade(deployRoot, misnamed);
  assert.equal(mismatch.status, 1, mismatch.output);
  assert.equal(mismatch.code, 'E_RELEASE_VERSION_MISMATCH', mismatch.output);
});

test('a file that is no release, and a folder without a manifest, are said to be no release', async () => {
  const notes = join(await tempDir('theseus-notes-'), 'notes.txt');
  await writeFile(notes, 'not a release\n');
  assert.equal(upgrade(deployRoot, notes).code, 'E_RELEASE_NOT_A_RELEASE');
  assert.equal(upgrade(deployRoot, await tempDir('theseus-empty-')).code, 'E_RELEASE_NOT_A_RELEASE');
});

test('7. a refused swap (a release that changes no running service) takes away what it installed', async () => {
  const { results } = await built;
  const sameCode = join(await tempDir('theseus-same-'), 'release');
  await cp(results[0]!.dir, sameCode, { recursive: true });
  const sameManifest = JSON.parse(await readFile(join(sameCode, 'manifest.json'), 'utf8')) as { version: string };
  sameManifest.version = '0.1.1';
  await writeFile(join(sameCode, 'manifest.json'), JSON.stringify(sameManifest));
  const registryBefore = (await readRegistry(deployRoot)).releases;
  const releasesBefore = (await readdir(join(deployRoot, 'releases'))).sort();
  const nothing = upgrade(deployRoot, sameCode);
  assert.equal(nothing.status, 1, nothing.output);
  assert.equal(nothing.code, 'E_SWAP_NOTHING_TO_DO', nothing.output);
  assert.deepEqual((await readRegistry(deployRoot)).releases, registryBefore, 'the refused release left the registry');
  assert.deepEqual((await readdir(join(deployRoot, 'releases'))).sort(), releasesBefore, 'and the disk, with no staging folder');
});

test("a downgrade the wrong way to a release folder already in releases/ leaves the registry as it was, and the folder in place", async () => {
  const { results } = await built;
  // As in the repo, whose releases/ is its deploy root: a release built in place, not installed.
  const inPlace = join(deployRoot, 'releases', '0.3.0');
  await cp(results[2]!.dir, inPlace, { recursive: true });
  try {
    const registryBefore = (await readRegistry(deployRoot)).releases;
    const run = deployed(deployRoot, 'downgrade', inPlace, '--json');
    const parsed = (run.stdout ? swapJson(run.stdout) : {}) as { error?: { code: string } };
    assert.equal(run.status, 1, run.stdout + run.stderr);
    assert.equal(parsed.error?.code, 'E_DOWNGRADE_IS_UPGRADE', run.stdout + run.stderr);
    assert.deepEqual((await readRegistry(deployRoot)).releases, registryBefore, 'no registry row left behind by the refused request');
    assert.ok((await readdir(inPlace)).includes('manifest.json'), 'the folder it found stays');
  } finally {
    await rm(inPlace, { recursive: true, force: true });
  }
});

test('a downgrade to a tarball at a long path reaches the kernel (the path was once cut at 64 characters, a bad frame)', async () => {
  const { results } = await built;
  const deep = join(await tempDir('theseus-deep-'), 'a-folder-name-long-enough', 'to-make-the-path-longer-than-sixty-four-characters');
  await mkdir(deep, { recursive: true });
  const tarball = join(deep, 'sequence-0.2.0.tar.gz');
  await cp(results[1]!.tarball, tarball);
  assert.ok(tarball.length > 100);
  const run = deployed(deployRoot, 'downgrade', tarball, '--json');
  const parsed = (run.stdout ? swapJson(run.stdout) : {}) as { error?: { code: string } };
  // Running 0.1.0: 0.2.0 is the wrong way, which only the kernel can tell after reading the tarball.
  assert.equal(parsed.error?.code, 'E_DOWNGRADE_IS_UPGRADE', run.stdout + run.stderr);
});

test('8. a plain (uncompressed) tar named .tar.gz is read by its magic bytes, and installs', async () => {
  const { results } = await built;
  const plain = join(await tempDir('theseus-plain-'), 'sequence-0.2.0.tar.gz');
  await writeFile(plain, gunzipSync(await readFile(results[1]!.tarball)));
  const plainUpgrade = upgrade(deployRoot, plain);
  assert.equal(plainUpgrade.status, 0, plainUpgrade.output);
  assert.equal(JSON.parse(deployed(deployRoot, 'status', '--json').stdout).release, '0.2.0');
  assert.deepEqual((await readdir(join(deployRoot, 'releases'))).filter((name) => name.startsWith('.')), [], 'no staging folder left');
  assert.equal(deployed(deployRoot, 'stop').status, 0);
});

test('a SIGKILL mid-unpack leaves a staging folder; the next boot removes it and says so', async () => {
  const { results } = await built;
  const deployRoot = await tempDir('theseus-killed-');
  await extract({ file: results[0]!.tarball, cwd: deployRoot });
  // The repo's kernel: a release's bundled kernel ignores THESEUS_FAULTS.
  const kernelBin = join(repo, 'kernel', 'index.js');
  const cli = (env: Record<string, string>, ...args: string[]) =>
    spawnSync(process.execPath, [kernelBin, ...args, '--root', deployRoot], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, ...env } });
  assert.equal(cli({ THESEUS_FAULTS: 'hang-after:unpack' }, 'start').status, 0);
  started.push(() => cli({}, 'stop'));
  const pid = Number(cli({}, 'pid').stdout.trim());
  const upgrading = spawn(process.execPath, [kernelBin, 'upgrade', results[1]!.tarball, '--root', deployRoot], { stdio: 'ignore' });
  upgrading.on('error', () => undefined);
  // Held right after the unpack: wait until the staging folder holds the whole release.
  const releases = join(deployRoot, 'releases');
  const staged = async () => {
    for (const name of await readdir(releases)) {
      if (name.startsWith('.staging-') && (await readFile(join(releases, name, 'releases', '0.2.0', 'manifest.json')).catch(() => null))) return name;
    }
    return null;
  };
  let stale: string | null = null;
  for (let polls = 0; polls < 600 && stale === null; polls++) {
    stale = await staged();
    if (stale === null) await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.ok(stale, 'the upgrade never reached its unpacked state');
  await killAndWait(pid);
  upgrading.kill();
  assert.ok((await readdir(releases)).includes(stale), 'the killed kernel left its staging folder');

  const restarted = cli({}, 'start');
  assert.equal(restarted.status, 0, restarted.stderr + restarted.stdout);
  assert.deepEqual((await readdir(releases)).filter((name) => name.startsWith('.')), [], 'the boot removed it');
  assert.match(await readFile(join(deployRoot, 'var', 'log', 'kernel.log'), 'utf8'), new RegExp(`removed 1 staging folder left by an interrupted install: .*${stale}`));
  assert.equal(cli({}, 'upgrade', results[1]!.tarball).status, 0, 'and the upgrade then goes through');
  assert.equal(cli({}, 'stop').status, 0);
});

test("removeStaleStaging keeps a live installer's folder; discardInstall gives back a seeded tarball", async () => {
  const { results } = await built;
  const root = await tempDir('theseus-staging-');
  const releases = join(root, 'releases');
  // The parent (the test runner) is alive; a pid past the kernel's limit never is.
  for (const name of [`.staging-${process.ppid}-live`, '.staging-4194400-dead', '.staging-0123456789ab']) await mkdir(join(releases, name), { recursive: true });
  const lines: string[] = [];
  assert.deepEqual((await removeStaleStaging(root, (line) => lines.push(line))).sort(), ['.staging-0123456789ab', '.staging-4194400-dead']);
  assert.deepEqual(await readdir(releases), [`.staging-${process.ppid}-live`]);
  assert.equal(lines.length, 1);

  // The seed's way: a tarball copied into releases/<version>/, then installed by version.
  await mkdir(join(releases, '0.2.0'));
  await cp(results[1]!.tarball, join(releases, '0.2.0', 'sequence-0.2.0.tar.gz'));
  await installRelease(root, '0.2.0');
  assert.match(await discardInstall(root, '0.2.0', true), /stays installed/, 'a release that ran stays');
  assert.deepEqual((await readRegistry(root)).releases.map((entry) => entry.version), ['0.2.0']);
  await discardInstall(root, '0.2.0', false);
  assert.deepEqual(await readdir(join(releases, '0.2.0')), ['sequence-0.2.0.tar.gz'], 'the tarball is back as it was');
  assert.deepEqual((await readRegistry(root)).releases, []);
  assert.equal((await installRelease(root, '0.2.0')).version, '0.2.0', 'and installs again');
});
