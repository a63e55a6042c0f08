// The class of bug beyond the manifest: a plain-object lookup keyed by a string someone else
// chose finds what Object.prototype holds (`constructor`, `toString`, ...), and an assignment to
// `__proto__` replaces a prototype. Each place below once did one or the other.

import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { decodeHttpRequest } from '../../kernel/common/http-codec.ts';
import { loadReleaseConfig } from '../../kernel/release/config.ts';
import type { ServiceManifest } from '../../kernel/release/manifest.ts';
import { computePlan } from '../../kernel/release/plan.ts';
import { readRegistry } from '../../kernel/release/registry.ts';
import { tempDir } from './helpers.ts';

const service: ServiceManifest = {
  entry: 'services/a/a.mjs',
  sha256: 'a'.repeat(64),
  vsn: '0',
  calls: [],
  casts: [],
  uses: [],
  migrations: [],
  hasTerminate: false,
  hasHealth: false,
  stateCheck: 'transitions',
  staticDir: null,
};

test('the upgrade plan: a new service named like an Object.prototype property is added, not mistaken for an old one', () => {
  for (const name of ['constructor', 'toString', 'hasOwnProperty', 'valueOf']) {
    const plan = computePlan({ version: '1.0.0', services: { a: service } }, { version: '1.1.0', services: { a: service, [name]: service } });
    assert.equal(plan.services[name]?.change, 'added', name);
  }
});

test('HTTP requests: query and header names from the client are plain own keys, never the prototype', () => {
  const request = decodeHttpRequest(['GET', '/x', 'constructor=1&__proto__=a&__proto__=b&toString=2', ['Constructor', 'v', 'hasOwnProperty', 'w', '__proto__', 'p'], null]);
  assert.equal(request.query.constructor, '1');
  assert.equal(request.query.toString, '2');
  assert.ok(Object.hasOwn(request.query, '__proto__'));
  assert.deepEqual(Object.getOwnPropertyDescriptor(request.query, '__proto__')?.value, ['a', 'b']);
  assert.equal(Object.getPrototypeOf(request.query), Object.prototype, "the query's prototype is untouched");
  assert.equal(request.headers.constructor, 'v');
  assert.equal(request.headers.hasownproperty, 'w');
  assert.equal(Object.getPrototypeOf(request.headers), Object.prototype);
  // A structured clone (how a request may travel on) keeps every value.
  assert.deepEqual(structuredClone(request.query), request.query);
});

test("the release config: a service name that breaks the pattern is refused, not bundled to 'services/../x/'", async () => {
  const app = await tempDir('theseus-config-');
  await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'x', version: '1.0.0', type: 'module' }));
  await writeFile(join(app, 'a.ts'), 'export default {};\n');
  await writeFile(join(app, 'theseus.config.ts'), "export default { app: 'x', services: { '../../escape': { entry: './a.ts' } } };\n");
  await assert.rejects(loadReleaseConfig(join(app, 'theseus.config.ts')), { code: 'E_CONFIG_INVALID' });
});

test("the registry: a version that is a path is refused ('kernel remove' deletes releases/<version>/)", async () => {
  const root = await tempDir('theseus-registry-');
  await mkdir(join(root, 'releases'));
  const entry = { status: 'old', manifestSha256: '0'.repeat(64), installedAt: new Date(0).toISOString() };
  await writeFile(join(root, 'releases', 'RELEASES'), JSON.stringify({ schema: 1, releases: [{ version: '../../..', ...entry }] }));
  await assert.rejects(readRegistry(root), { code: 'E_REGISTRY_INVALID' });
});
