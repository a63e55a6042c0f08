// `kernel release` on the seed's three versions: manifests, upgrade plans, reproducibility, and
// the refusals (no version bump, a vsn change without migrations).

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { buildRelease } from '../../kernel/release/build.ts';
import { root } from '../helpers.ts';
import { buildExamples, exampleConfig, tempDir } from './helpers.ts';

const sha = async (file: string) => createHash('sha256').update(await readFile(file)).digest('hex');

test('the three example releases: manifests describe each service, plans say what changed', async () => {
  const { results } = await buildExamples();
  const [first, second, third] = results;
  for (const result of results) {
    assert.equal(result.manifest.app, 'sequence');
    assert.equal(result.manifest.protocol, 1);
    const service = result.manifest.services.sequence!;
    assert.deepEqual(service.calls, ['nextNumber', 'httpNext', 'httpIncrement']);
    assert.deepEqual(service.casts, ['incrementNumber']);
    assert.equal(service.sha256, await sha(join(result.dir, service.entry)));
    assert.equal(result.manifest.files[service.entry]!.sha256, service.sha256);
  }
  assert.equal(first!.manifest.services.sequence!.vsn, '0');
  assert.equal(first!.plan.from, null);
  assert.equal(first!.plan.services.sequence!.change, 'added');

  // 0.1.0 -> 0.2.0 changes the code only.
  assert.equal(second!.plan.from, '0.1.0');
  assert.deepEqual(second!.plan.services.sequence, { change: 'code', fromVsn: '0', toVsn: '0', up: [], down: [] });

  // 0.2.0 -> 0.3.0 changes the state vsn, with migrations both ways.
  assert.equal(third!.plan.from, '0.2.0');
  assert.deepEqual(third!.plan.services.sequence, { change: 'vsn', fromVsn: '0', toVsn: '1', up: ['0 -> 1'], down: ['1 -> 0'] });
  assert.deepEqual(third!.manifest.services.sequence!.migrations, [{ from: '0', to: '1', hasDown: true }]);
  assert.deepEqual(third!.plan.warnings, []);
});

test('builds are reproducible: the same sources give the same bytes, tarball included', async () => {
  const a = await buildExamples();
  const b = await buildExamples();
  for (const [index, result] of a.results.entries()) {
    const other = b.results[index]!;
    assert.equal(result.manifest.services.sequence!.sha256, other.manifest.services.sequence!.sha256);
    assert.equal(await sha(join(result.dir, 'manifest.json')), await sha(join(other.dir, 'manifest.json')));
    assert.equal(await sha(result.tarball), await sha(other.tarball), `tarball of ${result.version} differs between two builds`);
  }
  // Building the same version again from the same sources changes nothing.
  const again = await buildRelease({ configFile: exampleConfig('0.3.0'), outDir: a.outDir });
  assert.equal(again.built, false);
});

/** A throwaway app: package.json at `version` and one service whose source is given. */
async function makeApp(version: string, serviceSource: string): Promise<string> {
  const dir = await tempDir('theseus-app-');
  await writeFile(join(dir, 'package.json'), JSON.stringify({ name: 'probe', version, type: 'module' }));
  await mkdir(join(dir, 'svc'));
  await writeFile(join(dir, 'svc', 'index.ts'), serviceSource);
  await writeFile(
    join(dir, 'theseus.config.ts'),
    `import { defineRelease } from '${root}kernel/release/config.ts';\nexport default defineRelease({ app: 'probe', services: { probe: { entry: './svc/index.ts' } } });\n`,
  );
  return dir;
}

const service = (vsn: string, body: string, migrations = '[]') =>
  `import { defineService } from '${root}kernel/service.ts';\nexport default defineService({ vsn: '${vsn}', init: () => 0, calls: { get: ({ state }) => ({ reply: ${body} }) }, migrations: ${migrations} });\n`;

async function setVersion(app: string, version: string): Promise<void> {
  await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'probe', version, type: 'module' }));
}

test('a release whose version was not bumped is refused', async () => {
  const app = await makeApp('1.0.0', service('0', 'state'));
  const out = await tempDir();
  await buildRelease({ configFile: join(app, 'theseus.config.ts'), outDir: out });
  await writeFile(join(app, 'svc', 'index.ts'), service('0', 'state + 1'));
  await assert.rejects(buildRelease({ configFile: join(app, 'theseus.config.ts'), outDir: out }), { code: 'E_VERSION_NOT_BUMPED' });
  // Nor may a release go below the newest one built.
  await setVersion(app, '0.9.0');
  await assert.rejects(buildRelease({ configFile: join(app, 'theseus.config.ts'), outDir: out }), { code: 'E_VERSION_NOT_BUMPED' });
  await setVersion(app, '1.0.1');
  const bumped = await buildRelease({ configFile: join(app, 'theseus.config.ts'), outDir: out });
  assert.equal(bumped.plan.services.probe!.change, 'code');
});

test('a vsn change without a chain of migrations fails the build; a missing down path only warns', async () => {
  const app = await makeApp('1.0.0', service('0', 'state'));
  const out = await tempDir();
  await buildRelease({ configFile: join(app, 'theseus.config.ts'), outDir: out });
  await setVersion(app, '1.1.0');
  await writeFile(join(app, 'svc', 'index.ts'), service('1', 'state'));
  await assert.rejects(buildRelease({ configFile: join(app, 'theseus.config.ts'), outDir: out }), (error: Error & { code: string }) => {
    assert.equal(error.code, 'E_NO_MIGRATION_PATH');
    assert.match(error.message, /from state vsn '0' to '1'/);
    return true;
  });
  await writeFile(join(app, 'svc', 'index.ts'), service('1', 'state', `[{ from: '0', to: '1', up: (n: number) => n }]`));
  const lines: string[] = [];
  const result = await buildRelease({ configFile: join(app, 'theseus.config.ts'), outDir: out, log: (line) => lines.push(line) });
  assert.deepEqual(result.plan.services.probe, { change: 'vsn', fromVsn: '0', toVsn: '1', up: ['0 -> 1'], down: null });
  assert.equal(result.plan.warnings.length, 1);
  assert.ok(lines.some((line) => /warning: probe: no down migration/.test(line)));
});

test('static files in the service folder are copied and listed with their hashes', async () => {
  const app = await makeApp('1.0.0', service('0', 'state'));
  await mkdir(join(app, 'svc', 'static'));
  await writeFile(join(app, 'svc', 'static', 'banner.txt'), 'The next number is served fresh.\n');
  const result = await buildRelease({ configFile: join(app, 'theseus.config.ts'), outDir: await tempDir() });
  assert.equal(result.manifest.services.probe!.staticDir, 'services/probe/static');
  assert.ok(result.manifest.files['services/probe/static/banner.txt']);
  assert.equal(await readFile(join(result.dir, 'services/probe/static/banner.txt'), 'utf8'), 'The next number is served fresh.\n');
});

test('a static file named like an Object.prototype key is listed like any other, and the release installs', async () => {
  const { installRelease } = await import('../../kernel/release/install.ts');
  const app = await makeApp('1.0.0', service('0', 'state'));
  await mkdir(join(app, 'svc', 'static'));
  for (const name of ['__proto__', 'constructor', 'hasOwnProperty']) await writeFile(join(app, 'svc', 'static', name), `${name}\n`);
  const result = await buildRelease({ configFile: join(app, 'theseus.config.ts'), outDir: await tempDir() });
  for (const name of ['__proto__', 'constructor', 'hasOwnProperty']) {
    assert.ok(Object.hasOwn(result.manifest.files, `services/probe/static/${name}`), `${name} is listed`);
  }
  const installed = await installRelease(await tempDir(), result.dir);
  assert.equal(installed.version, '1.0.0');
});
