// Keys that cannot escape: every key of a manifest's `files` and `services` is checked by a
// schema that really refuses (TypeBox's Record alone let any key that broke its pattern through),
// by code that agrees with it, and once more against the folder on disk. Hostile keys, listed
// and generated, never validate, or never write outside the deploy root.

import assert from 'node:assert/strict';
import { cp, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { test } from 'node:test';
import { Value } from '@sinclair/typebox/value';
import fc from 'fast-check';
import { sha256 } from '../../kernel/release/fs-atomic.ts';
import { installRelease } from '../../kernel/release/install.ts';
import { ManifestSchema, PlanSchema, parseManifest } from '../../kernel/release/manifest.ts';
import { parseUntrustedJson, pathInside, releasePathProblem } from '../../kernel/release/release-paths.ts';
import { sharedExamples, tempDir } from './helpers.ts';

const built = sharedExamples();

const hostileKeys = [
  '../x',
  '../../../../../../../tmp/elsewhere/x.txt',
  'services/../../x',
  '..',
  '.',
  '',
  './a',
  'a/./b',
  'a//b',
  'a/',
  '/etc/passwd',
  '//server/share',
  'C:/Windows/x',
  'C:x',
  'a\\..\\..\\x',
  '..\\x',
  'a\u0000b',
  // The old pattern's lookahead used `.`, which stops at a newline: this one passed it.
  'a\n/../../../x',
  'a\r/b',
  'tab\there',
  'del\u007f',
  'x'.repeat(1025),
];

/** A valid manifest (the example's 0.2.0), parsed as the installer parses it. */
async function validManifest(): Promise<Record<string, unknown> & { files: Record<string, unknown>; services: Record<string, unknown> }> {
  const { results } = await built;
  return JSON.parse(await readFile(join(results[1]!.dir, 'manifest.json'), 'utf8'));
}

test('the manifest schema itself refuses every hostile key in files and in services', async () => {
  const manifest = await validManifest();
  const listed = { sha256: '0'.repeat(64), size: 1 };
  assert.equal(Value.Check(ManifestSchema, manifest), true, 'the unchanged manifest validates');
  for (const key of hostileKeys) {
    const files = { ...manifest, files: Object.assign(parseUntrustedJson('{}') as object, manifest.files, { [key]: listed }) };
    assert.equal(Value.Check(ManifestSchema, files), false, `files key ${JSON.stringify(key)} validated`);
    assert.notEqual(releasePathProblem(key), null, `the code accepts ${JSON.stringify(key)}`);
    assert.throws(() => parseManifest(JSON.stringify(files), 'manifest.json'), { code: 'E_MANIFEST_INVALID' }, JSON.stringify(key));
  }
  const service = Object.values(manifest.services)[0];
  for (const key of ['../x', '__proto__', 'constructor x', '1abc', 'a/b', '', 'x'.repeat(65)]) {
    // JSON text, as a manifest arrives: JSON.parse keeps `__proto__` as an own key.
    const text = JSON.stringify({ ...manifest, services: { sequence: service } }).replace('"services":{"sequence"', `"services":{${JSON.stringify(key)}:${JSON.stringify(service)},"sequence"`);
    assert.equal(Value.Check(ManifestSchema, JSON.parse(text)), false, `services key ${JSON.stringify(key)} validated`);
    assert.throws(() => parseManifest(text, 'manifest.json'), { code: 'E_MANIFEST_INVALID' }, JSON.stringify(key));
  }
  const plan = { schema: 1, from: null, to: '1.0.0', services: { '../x': { change: 'added', fromVsn: null, toVsn: '0', up: [], down: [] } }, warnings: [] };
  assert.equal(Value.Check(PlanSchema, plan), false, "plan.json's services keys are checked too");
});

test('ordinary paths still validate, unicode and Object.prototype names included', async () => {
  const manifest = await validManifest();
  for (const key of ['services/a.mjs', 'constructor', '__proto__', 'toString', 'hasOwnProperty', 'a.b', '...', '.hidden', 'ünïcødé/файл.txt', '🙂', 'x'.repeat(1024)]) {
    assert.equal(releasePathProblem(key), null, JSON.stringify(key));
    const text = JSON.stringify(manifest).replace('"files":{', `"files":{${JSON.stringify(key)}:{"sha256":"${'0'.repeat(64)}","size":1},`);
    const parsed = parseManifest(text, 'manifest.json');
    assert.ok(Object.hasOwn(parsed.files, key), `${JSON.stringify(key)} is an own key of files`);
    assert.equal(Object.getPrototypeOf(parsed.files), null, 'files has no prototype to inherit keys from');
  }
  // A key that is also another key's folder can never be laid out on disk: refused.
  const both = JSON.stringify(manifest).replace('"files":{', `"files":{"services":{"sha256":"${'0'.repeat(64)}","size":1},`);
  assert.throws(() => parseManifest(both, 'manifest.json'), { code: 'E_MANIFEST_INVALID' });
});

/** Paths built from the pieces that break path checks, joined every which way. */
const hostilePath = fc.oneof(
  fc
    .tuple(
      fc.constantFrom('', '/', './', '../', '\\', 'C:', '//'),
      fc.array(fc.constantFrom('..', '.', '', 'a', 'b.txt', '__proto__', 'constructor', 'é', '🙂', ' ', 'a\u0000', 'n\n', '\\', '..\\..', 'x'.repeat(300)), { minLength: 1, maxLength: 6 }),
      fc.constantFrom('/', '\\', '//'),
      fc.constantFrom('', '/', '\\'),
    )
    .map(([lead, segments, separator, trail]) => `${lead}${segments.join(separator)}${trail}`),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ unit: fc.constantFrom('.', '/', '\\', 'a', '\u0000', '\n'), maxLength: 12 }),
);

test('property: the schema and the code agree on every key, and an accepted key stays inside the folder', async () => {
  const manifest = await validManifest();
  const listed = { sha256: '0'.repeat(64), size: 1 };
  const dir = '/srv/theseus/releases/1.0.0';
  fc.assert(
    fc.property(hostilePath, (key) => {
      const candidate = { ...manifest, files: Object.assign(Object.create(null) as object, { [key]: listed }), services: {} };
      const bySchema = Value.Check(ManifestSchema, candidate);
      const byCode = releasePathProblem(key) === null;
      assert.equal(bySchema, byCode, `schema ${bySchema}, code ${byCode} for ${JSON.stringify(key)}`);
      if (!byCode) {
        assert.throws(() => pathInside(dir, key), { code: 'E_RELEASE_PATH_ESCAPES' });
        return;
      }
      const full = pathInside(dir, key);
      const back = relative(dir, full);
      assert.ok(back !== '' && back !== '..' && !back.startsWith('../') && !isAbsolute(back), `${JSON.stringify(key)} resolves to ${full}`);
      assert.equal(back, key, 'an accepted key is already normalized');
    }),
    { numRuns: 2000 },
  );
});

/** Every file below `dir`, as paths relative to it. */
async function filesBelow(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true, withFileTypes: true })).filter((entry) => entry.isFile()).map((entry) => relative(dir, join(entry.parentPath, entry.name)));
}

test('property: a release folder listing any key, with the right hash, never writes outside the deploy root', async () => {
  const { results } = await built;
  const source = results[1]!.dir;
  const original = JSON.parse(await readFile(join(source, 'manifest.json'), 'utf8')) as { files: Record<string, unknown> };
  await fc.assert(
    fc.asyncProperty(hostilePath, async (key) => {
      // A sandbox holding a deep release folder and the deploy root: a key can reach up out of
      // the release folder, and whatever it reaches is still inside the sandbox, where we look.
      const sandbox = await tempDir('theseus-keys-');
      const release = join(sandbox, 'src', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'release');
      const root = join(sandbox, 'root');
      await mkdir(root);
      await cp(source, release, { recursive: true });
      const payload = Buffer.from(`payload for ${JSON.stringify(key)}`);
      const manifest = { ...original, files: { ...original.files, [key]: { sha256: sha256(payload), size: payload.length } } };
      await writeFile(join(release, 'manifest.json'), JSON.stringify(manifest));
      // The payload goes where the key points from the release folder, if that is in the sandbox.
      const from = resolve(release, key.replace(/\0/g, ''));
      if (!relative(sandbox, from).startsWith('../') && !key.includes('\0')) await mkdir(dirname(from), { recursive: true }).then(() => writeFile(from, payload)).catch(() => undefined);
      const before = new Set(await filesBelow(sandbox));
      const outcome = await installRelease(root, release).then(
        (installed) => installed,
        (error: Error & { code: string }) => error,
      );
      const created = (await filesBelow(sandbox)).filter((file) => !before.has(file));
      const outsideRoot = created.filter((file) => !file.startsWith(`root/`));
      assert.deepEqual(outsideRoot, [], `installing a manifest listing ${JSON.stringify(key)} wrote outside the deploy root`);
      if (outcome instanceof Error) {
        assert.equal(releasePathProblem(key) === null ? 'valid key' : outcome.code, releasePathProblem(key) === null ? 'valid key' : 'E_MANIFEST_INVALID', `${JSON.stringify(key)}: ${outcome.message}`);
      } else {
        assert.equal(releasePathProblem(key), null, `${JSON.stringify(key)} was installed`);
        assert.deepEqual(await readFile(join(root, 'releases', '0.2.0', key)), payload, 'the payload landed inside the release');
      }
    }),
    { numRuns: 60 },
  );
});
