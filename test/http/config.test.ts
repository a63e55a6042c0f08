// The `http` section of theseus.config.ts: what `kernel release` accepts, what it refuses (each
// with a message naming the fix), and what lands in the manifest.

import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { buildRelease } from '../../kernel/release/build.ts';
import { root } from '../helpers.ts';
import { tempDir } from '../release/helpers.ts';

const sequence = join(root, 'services', 'sequence', '0.1.0', 'sequence.ts');

async function project(http: unknown): Promise<string> {
  const dir = await tempDir('theseus-http-config-');
  await mkdir(join(dir, 'src'));
  await writeFile(join(dir, 'package.json'), JSON.stringify({ name: 'web', version: '1.0.0', type: 'module' }));
  const config = { app: 'web', services: { sequence: { entry: sequence } }, http };
  await writeFile(join(dir, 'theseus.config.ts'), `export default ${JSON.stringify(config, null, 2)};\n`);
  return dir;
}

async function refusal(http: unknown): Promise<string> {
  const dir = await project(http);
  const error = await buildRelease({ configFile: join(dir, 'theseus.config.ts'), outDir: join(dir, 'releases') }).then(
    () => null,
    (caught: Error & { code?: string }) => caught,
  );
  assert.ok(error, 'the build was refused');
  assert.equal(error.code, 'E_CONFIG_INVALID', error.message);
  return error.message;
}

const route = (extra: Record<string, unknown> = {}) => ({ method: 'GET', path: '/next', service: 'sequence', handler: 'httpNext', ...extra });

test('a release with an http section: defaults filled in, and carried in the manifest', async () => {
  const dir = await project({ listeners: [{ port: 0, routes: [route(), route({ method: 'POST', path: '/increment', handler: 'httpIncrement' })] }] });
  const result = await buildRelease({ configFile: join(dir, 'theseus.config.ts'), outDir: join(dir, 'releases') });
  assert.deepEqual(result.manifest.http, {
    listeners: [{ port: 0, host: '127.0.0.1', routes: [route(), route({ method: 'POST', path: '/increment', handler: 'httpIncrement' })] }],
    maxBodyBytes: 1024 * 1024,
    maxReplyBytes: 16 * 1024 * 1024,
    requestTimeoutMs: 30_000,
  });
});

test('refused: a route to a service not in the release, or to a handler that is not a call', async () => {
  assert.match(await refusal({ listeners: [{ port: 0, routes: [route({ service: 'nobody' })] }] }), /service 'nobody', which is not in services/);
  assert.match(await refusal({ listeners: [{ port: 0, routes: [route({ handler: 'incrementNumber' })] }] }), /sequence\.incrementNumber, which is not a call of that service/);
  assert.match(await refusal({ listeners: [{ port: 0, routes: [route({ handler: 'nope' })] }] }), /its calls: nextNumber, httpNext, httpIncrement/);
});

test('refused: the same route twice, the same port twice, bad methods, paths and ports', async () => {
  assert.match(await refusal({ listeners: [{ port: 0, routes: [route(), route()] }] }), /GET \/next is declared twice/);
  assert.match(await refusal({ listeners: [{ port: 8123, routes: [route()] }, { port: 8123, routes: [route({ path: '/other' })] }] }), /127\.0\.0\.1:8123 is declared twice/);
  assert.match(await refusal({ listeners: [{ port: 0, routes: [route()] }, { port: 0, routes: [route({ path: '/other' })] }] }), /127\.0\.0\.1:0 is declared twice/);
  assert.match(await refusal({ listeners: [{ port: 0, routes: [route({ method: 'FETCH' })] }] }), /method/);
  assert.match(await refusal({ listeners: [{ port: 0, routes: [route({ path: 'next' })] }] }), /path/);
  assert.match(await refusal({ listeners: [{ port: 70000, routes: [route()] }] }), /port/);
  assert.match(await refusal({ listeners: [] }), /listeners/);
});
