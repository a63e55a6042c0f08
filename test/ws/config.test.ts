// The `websockets` routes and `http.websocket` limits of theseus.config.ts: what `kernel release`
// puts in the manifest, and what it refuses, each with a message naming the fix.

import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { buildRelease } from '../../kernel/release/build.ts';
import { root } from '../helpers.ts';
import { tempDir } from '../temp-dirs.ts';

const chat = join(root, 'services', 'chat', '0.1.0', 'chat.ts');

async function build(http: unknown, services: Record<string, unknown> = { chat: { entry: chat } }) {
  const dir = await tempDir('theseus-ws-config-');
  await writeFile(join(dir, 'package.json'), JSON.stringify({ name: 'talk', version: '1.0.0', type: 'module' }));
  await writeFile(join(dir, 'theseus.config.ts'), `export default ${JSON.stringify({ app: 'talk', services, http }, null, 2)};\n`);
  return buildRelease({ configFile: join(dir, 'theseus.config.ts'), outDir: join(dir, 'releases') });
}

async function refusal(http: unknown, services?: Record<string, unknown>): Promise<string> {
  const error = await build(http, services).then(
    () => null,
    (caught: Error & { code?: string }) => caught,
  );
  assert.ok(error, 'the build was refused');
  assert.equal(error.code, 'E_CONFIG_INVALID', error.message);
  return error.message;
}

const socket = { path: '/chat', service: 'chat' };

test('a listener with only WebSocket routes, and the limits, land in the manifest as written', async () => {
  const limits = { maxPayloadBytes: 4096, maxBufferedBytes: 65536, maxConnections: 100, pingIntervalMs: 5000 };
  const result = await build({ listeners: [{ port: 0, websockets: [socket] }], websocket: limits });
  assert.deepEqual(result.manifest.http?.listeners, [{ port: 0, host: '127.0.0.1', routes: [], websockets: [socket] }]);
  assert.deepEqual(result.manifest.http?.websocket, limits);
});

test('refused: a WebSocket route to a service not in the release, or to a pooled one; a path taken twice; a listener with nothing', async () => {
  assert.match(await refusal({ listeners: [{ port: 0, websockets: [{ path: '/chat', service: 'nobody' }] }] }), /WebSocket route \/chat goes to service 'nobody', which is not in services/);
  assert.match(
    await refusal({ listeners: [{ port: 0, websockets: [{ path: '/chat', service: 'pooled' }] }] }, { chat: { entry: chat }, pooled: { entry: chat, pool: { size: 1 } } }),
    /a pooled service, which cannot remember a connection/,
  );
  assert.match(await refusal({ listeners: [{ port: 0, websockets: [socket, socket] }] }), /WebSocket route \/chat is declared twice/);
  assert.match(
    await refusal({ listeners: [{ port: 0, routes: [{ method: 'GET', path: '/chat', service: 'chat', handler: 'x' }], websockets: [socket] }] }),
    /both an HTTP route and a WebSocket route/,
  );
  assert.match(await refusal({ listeners: [{ port: 0 }] }), /has no routes and no websockets/);
  assert.match(await refusal({ listeners: [{ port: 0, websockets: [socket] }], websocket: { maxConnections: 0 } }), /maxConnections/);
});
