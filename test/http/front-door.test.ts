// The HTTP front door in the kernel's process, with a real kernel, real worker threads and real
// sockets: what a request carries to its handler, how replies and every kind of failure map to
// HTTP, limits, timeouts, and listeners that open, change and close.

import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { after, before, test } from 'node:test';
import { Kernel } from '../../kernel/index.ts';
import { HttpFrontDoor } from '../../kernel/main/http-front-door.ts';
import type { HttpConfig, HttpRoute } from '../../kernel/release/manifest.ts';
import { fixture, logCollector, waitUntil } from '../helpers.ts';
import { CountingAgent, send } from './helpers.ts';

const handlers = ['echo', 'bytes', 'text', 'empty', 'throws', 'badStatus', 'notAnObject', 'badHeader', 'big', 'slow', 'crash'];
const routes: HttpRoute[] = [
  ...handlers.map((handler): HttpRoute => ({ method: 'GET', path: `/${handler}`, service: 'echo', handler })),
  { method: 'POST', path: '/echo', service: 'echo', handler: 'echo' },
  { method: 'PUT', path: '/files/*', service: 'echo', handler: 'echo' },
  { method: 'GET', path: '/missing-handler', service: 'echo', handler: 'noSuchHandler' },
  { method: 'GET', path: '/missing-service', service: 'nobody', handler: 'echo' },
];

/** A port nothing listens on right now. */
function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.listen(0, '127.0.0.1', () => {
      const free = (probe.address() as { port: number }).port;
      probe.close(() => resolve(free));
    });
  });
}

function config(port: number, extra: Partial<HttpConfig> = {}): HttpConfig {
  return { listeners: [{ port, host: '127.0.0.1', routes }], maxBodyBytes: 1024, maxReplyBytes: 4096, requestTimeoutMs: 500, ...extra };
}

let kernel: Kernel;
let door: HttpFrontDoor;
let port: number;
const logs = logCollector();
const kernelLines: string[] = [];

before(async () => {
  kernel = await Kernel.start({ release: '1.0.0', services: { echo: { entry: fixture('http-echo') } }, onLog: logs.onLog, maxRestarts: 10 });
  door = new HttpFrontDoor({ callBatch: (service, calls, encoding) => kernel.callBatch(service, calls, encoding), log: (_level, message) => kernelLines.push(message), closeGraceMs: 1000 });
  await door.apply(config(0));
  port = door.stats().listeners[0]!.port;
});

after(async () => {
  await door.close();
  await kernel.stop();
});

test('a request reaches its handler as method, path, query, headers and body', async () => {
  const reply = await send(port, 'POST', '/echo?a=1&b=x&b=y&empty=', { headers: { 'x-test': 'hello', 'content-type': 'application/json' }, body: '{"n":1}' });
  assert.equal(reply.status, 200);
  const body = reply.json();
  assert.equal(body.method, 'POST');
  assert.equal(body.path, '/echo');
  assert.deepEqual(body.query, { a: '1', b: ['x', 'y'], empty: '' });
  assert.equal(body.header, 'hello');
  assert.equal(body.bodyType, 'string');
  assert.equal(body.body, '{"n":1}');

  // A binary body arrives as bytes; no body at all arrives as null.
  const binary = await send(port, 'POST', '/echo', { headers: { 'content-type': 'application/octet-stream' }, body: Buffer.from([1, 2, 3]) });
  assert.equal(binary.json().bodyType, 'bytes');
  assert.deepEqual(binary.json().body, [1, 2, 3]);
  const none = await send(port, 'GET', '/echo');
  assert.equal(none.json().bodyType, 'null');

  // A prefix route takes everything under it.
  const prefixed = await send(port, 'PUT', '/files/a/b.txt', { headers: { 'content-type': 'text/plain' }, body: 'x' });
  assert.equal(prefixed.status, 200);
  assert.equal(prefixed.json().path, '/files/a/b.txt');
});

test('replies: status, headers and body as the handler gave them, framing headers set by the kernel', async () => {
  const echo = await send(port, 'GET', '/echo');
  assert.equal(echo.headers['x-served-by'], '1.0.0');
  assert.deepEqual(echo.headers['set-cookie'], ['a=1', 'b=2']);
  assert.match(String(echo.headers['content-type']), /^application\/json/);
  // The handler's connection and content-length headers would break the framing: ignored.
  assert.equal(echo.headers['content-length'], String(echo.body.length));
  assert.notEqual(echo.headers.connection, 'upgrade');

  const bytes = await send(port, 'GET', '/bytes');
  assert.equal(bytes.headers['content-type'], 'application/octet-stream');
  assert.deepEqual([...bytes.body], [0, 1, 2, 255]);

  const text = await send(port, 'GET', '/text');
  assert.equal(text.status, 201);
  assert.equal(text.headers['content-type'], 'text/csv');
  assert.equal(text.body.toString(), 'a,b\n1,2\n');

  const empty = await send(port, 'GET', '/empty');
  assert.equal(empty.status, 204);
  assert.equal(empty.body.length, 0);

  // HEAD runs the GET route and sends no body.
  const head = await send(port, 'HEAD', '/text');
  assert.equal(head.status, 201);
  assert.equal(head.body.length, 0);
});

test('errors map to HTTP statuses, and the client never sees the handler\'s own message', async () => {
  const cases: Array<[string, string, number, string]> = [
    ['GET', '/nowhere', 404, 'E_HTTP_NO_ROUTE'],
    ['DELETE', '/echo', 405, 'E_HTTP_METHOD_NOT_ALLOWED'],
    ['GET', '/throws', 500, 'E_HANDLER_FAILED'],
    ['GET', '/badStatus', 502, 'E_HTTP_BAD_REPLY'],
    ['GET', '/notAnObject', 502, 'E_HTTP_BAD_REPLY'],
    ['GET', '/badHeader', 502, 'E_HTTP_BAD_REPLY'],
    ['GET', '/big', 502, 'E_HTTP_REPLY_TOO_LARGE'],
    ['GET', '/missing-handler', 502, 'E_UNKNOWN_METHOD'],
    ['GET', '/missing-service', 502, 'E_UNKNOWN_SERVICE'],
  ];
  for (const [method, path, status, code] of cases) {
    const reply = await send(port, method, path);
    assert.equal(reply.status, status, `${method} ${path}`);
    assert.equal(reply.json().error, code, `${method} ${path}`);
    assert.doesNotMatch(reply.body.toString(), /secret detail/);
  }
  const notAllowed = await send(port, 'DELETE', '/echo');
  assert.equal(notAllowed.headers.allow, 'GET, POST, HEAD');
  // The operator sees what went wrong in the kernel's log.
  assert.ok(kernelLines.some((line) => line.includes('/throws') && line.includes('secret detail')));
  assert.ok(kernelLines.some((line) => line.includes('E_HTTP_BAD_REPLY') || line.includes('status 42')));
  // The service kept serving through all of it.
  assert.equal((await send(port, 'GET', '/echo')).status, 200);
});

test('a body over maxBodyBytes gets 413 and never reaches the service', async () => {
  const before = (await send(port, 'GET', '/echo')).json().served as number;
  const declared = await send(port, 'POST', '/echo', { headers: { 'content-type': 'text/plain' }, body: 'x'.repeat(4096) });
  assert.equal(declared.status, 413);
  assert.equal(declared.json().error, 'E_HTTP_BODY_TOO_LARGE');
  // Chunked, with no declared length: cut off as it streams in.
  const chunked = await send(port, 'POST', '/echo', { headers: { 'content-type': 'text/plain', 'transfer-encoding': 'chunked' }, body: 'y'.repeat(4096) });
  assert.equal(chunked.status, 413);
  const afterwards = (await send(port, 'GET', '/echo')).json().served as number;
  assert.equal(afterwards, before + 1, 'only the two GETs were served');
});

test('a handler that does not reply in time gets the client a 504; the late reply is dropped', async () => {
  const before = door.stats().responses;
  const reply = await send(port, 'GET', '/slow');
  assert.equal(reply.status, 504);
  assert.equal(reply.json().error, 'E_HTTP_TIMEOUT');
  await new Promise((resolve) => setTimeout(resolve, 1200));
  // The late reply came back and was not written a second time.
  const after = door.stats().responses;
  assert.equal((after['5xx'] ?? 0) - (before['5xx'] ?? 0), 1);
  assert.equal(after['2xx'] ?? 0, before['2xx'] ?? 0);
  assert.equal(door.stats().inFlight, 0);
  assert.equal((await send(port, 'GET', '/echo')).status, 200);
});

test('requests that time out while queued behind slow ones get 504 and never reach the service', async () => {
  const served = async () => (await send(port, 'GET', '/echo')).json().served as number;
  const start = await served();
  // Two slow handlers fill the service's two batches in flight; the echoes queue in the front door.
  // One at a time, each seen in flight (so sent, in a batch of its own) before the next: a fixed
  // sleep here let a loaded machine put them in one batch, and an echo in the second.
  const slow = [send(port, 'GET', '/slow')];
  await waitUntil('the first slow request in flight', () => door.stats().inFlight === 1, { intervalMs: 5 });
  slow.push(send(port, 'GET', '/slow'));
  await waitUntil('the second slow request in flight', () => door.stats().inFlight === 2, { intervalMs: 5 });
  const queued = await Promise.all(Array.from({ length: 5 }, () => send(port, 'GET', '/echo')));
  for (const reply of queued) assert.equal(reply.status, 504);
  for (const reply of await Promise.all(slow)) assert.equal(reply.status, 504);
  await new Promise((resolve) => setTimeout(resolve, 3200));
  // Only the probe before and this one ran: the five timed-out echoes were never sent.
  assert.equal(await served(), start + 1);
});

test('a handler that takes its worker down gets 503; the service is restarted and serves again', async () => {
  const reply = await send(port, 'GET', '/crash');
  assert.equal(reply.status, 503);
  assert.equal(reply.headers['retry-after'], '1');
  await waitUntil('the restarted service to answer GET /echo with 200', async () => (await send(port, 'GET', '/echo')).status === 200, { intervalMs: 50 });
});

test('many concurrent requests over keep-alive connections: each answered once, state in step', async () => {
  const agent = new CountingAgent({ keepAlive: true, maxSockets: 16 });
  const start = (await send(port, 'GET', '/echo')).json().served as number;
  const seen: number[] = [];
  await Promise.all(
    Array.from({ length: 40 }, async () => {
      for (let i = 0; i < 25; i++) {
        const reply = await send(port, 'GET', '/echo', { agent });
        assert.equal(reply.status, 200);
        seen.push(reply.json().served as number);
      }
    }),
  );
  agent.destroy();
  seen.sort((a, b) => a - b);
  assert.deepEqual(seen, Array.from({ length: 1000 }, (_, i) => start + 1 + i));
  // Every connection the agent opened, not the ones it still holds: a server that closed each one
  // after its reply would have made the agent open about 1000.
  assert.ok(agent.connections <= 16, `${agent.connections} connections for 1000 requests`);
});

test('listeners: a taken port refuses the change and leaves the running ones alone; routes change in place', async () => {
  const blocker = createServer();
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  const takenPort = (blocker.address() as { port: number }).port;
  try {
    const withTaken: HttpConfig = { ...config(0), listeners: [...config(0).listeners, { port: takenPort, host: '127.0.0.1', routes }] };
    await assert.rejects(door.stage(withTaken), (error: Error & { code?: string }) => error.code === 'E_HTTP_LISTEN_FAILED' && error.message.includes(String(takenPort)));
    assert.equal(door.stats().listeners.length, 1);
    assert.equal((await send(port, 'GET', '/echo')).status, 200);
  } finally {
    blocker.close();
  }

  // New routes on the same socket: a kept listener answers with them at once.
  const fewer: HttpConfig = { ...config(0), listeners: [{ port: 0, host: '127.0.0.1', routes: [{ method: 'GET', path: '/only', service: 'echo', handler: 'echo' }] }] };
  await door.apply(fewer);
  assert.equal(door.stats().listeners[0]!.port, port, 'the socket stayed');
  assert.equal((await send(port, 'GET', '/echo')).status, 404);
  assert.equal((await send(port, 'GET', '/only')).status, 200);

  // A staged listener holds its requests until commit; an aborted one answers them 503.
  const second = await freePort();
  const staged = await door.stage({ ...fewer, listeners: [...fewer.listeners, { port: second, host: '127.0.0.1', routes }] });
  const held = send(second, 'GET', '/echo');
  await new Promise((resolve) => setTimeout(resolve, 100));
  staged.commit();
  assert.equal((await held).status, 200);
  const third = await freePort();
  const aborted = await door.stage({ ...fewer, listeners: [...fewer.listeners, { port: third, host: '127.0.0.1', routes }] });
  const heldThenRefused = send(third, 'GET', '/echo');
  await new Promise((resolve) => setTimeout(resolve, 100));
  await aborted.abort();
  const refused = await heldThenRefused;
  assert.equal(refused.status, 503);
  assert.equal(refused.headers['retry-after'], '1');
  await assert.rejects(send(third, 'GET', '/echo'), /ECONNREFUSED/);
  // Back to the full routes, with the second listener closed.
  await door.apply(config(0));
  assert.equal(door.stats().listeners.length, 1);
  await assert.rejects(send(second, 'GET', '/echo'), /ECONNREFUSED/);
  assert.equal((await send(port, 'GET', '/echo')).status, 200);
});
