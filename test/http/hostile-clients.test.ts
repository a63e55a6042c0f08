// Clients that try to exhaust the front door: too many requests waiting, too many body bytes
// held, too many connections, headers that never finish. Each limit answers or cuts the client
// off, and the kernel serves everyone else. The limits are made small here so the tests stay
// small; their defaults are DEFAULT_FRONT_DOOR_LIMITS.

import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { after, before, test } from 'node:test';
import { Kernel } from '../../kernel/index.ts';
import { HttpFrontDoor } from '../../kernel/main/http-front-door.ts';
import type { HttpRoute } from '../../kernel/release/manifest.ts';
import { fixture, logCollector } from '../helpers.ts';
import { send } from './helpers.ts';

let kernel: Kernel;
let door: HttpFrontDoor;
let port: number;

const routes: HttpRoute[] = [
  { method: 'GET', path: '/echo', service: 'echo', handler: 'echo' },
  { method: 'POST', path: '/echo', service: 'echo', handler: 'echo' },
  { method: 'GET', path: '/slow', service: 'echo', handler: 'slow' },
];

before(async () => {
  kernel = await Kernel.start({ release: '1.0.0', services: { echo: { entry: fixture('http-echo') } }, ...logCollector() });
  door = new HttpFrontDoor({
    callBatch: (service, calls, encoding) => kernel.callBatch(service, calls, encoding),
    log: () => undefined,
    closeGraceMs: 500,
    limits: { maxInFlight: 3, maxBufferedBodyBytes: 3000, maxConnections: 8, headersTimeoutMs: 400, requestReceiveTimeoutMs: 800 },
  });
  await door.apply({ listeners: [{ port: 0, host: '127.0.0.1', routes }], maxBodyBytes: 2000, maxReplyBytes: 1 << 20, requestTimeoutMs: 5000 });
  port = door.stats().listeners[0]!.port;
});

after(async () => {
  await door.close();
  await kernel.stop();
});

function openSocket(): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => resolve(socket));
    socket.on('error', reject);
  });
}

/** Resolves with what the server sent before it closed the socket. */
function closed(socket: Socket): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    socket.on('data', (chunk: Buffer) => (text += chunk.toString()));
    socket.on('close', () => resolve(text));
    socket.on('error', () => undefined);
  });
}

test('past maxInFlight requests waiting, the next one gets 503 at once; the waiting ones are served', async () => {
  const slow = [send(port, 'GET', '/slow'), send(port, 'GET', '/slow'), send(port, 'GET', '/slow')];
  await new Promise((resolve) => setTimeout(resolve, 100));
  const refused = await send(port, 'GET', '/echo');
  assert.equal(refused.status, 503);
  assert.equal(refused.json().error, 'E_HTTP_BUSY');
  assert.equal(refused.headers['retry-after'], '1');
  for (const reply of await Promise.all(slow)) assert.equal(reply.status, 200);
  assert.equal((await send(port, 'GET', '/echo')).status, 200);
});

test('past maxBufferedBodyBytes held, a request sending more gets 503 and its connection closes', async () => {
  // Two bodies of 1500 bytes wait behind a slow call; a third would pass the 3000-byte limit.
  const slow = send(port, 'GET', '/slow');
  await new Promise((resolve) => setTimeout(resolve, 50));
  const body = 'b'.repeat(1500);
  const held = [send(port, 'POST', '/echo', { headers: { 'content-type': 'text/plain' }, body }), send(port, 'POST', '/echo', { headers: { 'content-type': 'text/plain' }, body })];
  await new Promise((resolve) => setTimeout(resolve, 100));
  const refused = await send(port, 'POST', '/echo', { headers: { 'content-type': 'text/plain' }, body });
  assert.equal(refused.status, 503);
  assert.equal(refused.json().error, 'E_HTTP_BUSY');
  assert.equal(refused.headers.connection, 'close');
  assert.equal((await slow).status, 200);
  for (const reply of await Promise.all(held)) assert.equal(reply.status, 200);
  // Answered requests no longer count: the same body goes through now.
  assert.equal((await send(port, 'POST', '/echo', { headers: { 'content-type': 'text/plain' }, body })).status, 200);
});

test('a client that never finishes its headers is cut off; one that sends a body too slowly too', async () => {
  const stalled = await openSocket();
  const stalledDone = closed(stalled);
  stalled.write('GET /echo HTTP/1.1\r\nHost: x\r\n'); // and never the blank line
  const trickle = await openSocket();
  const trickleDone = closed(trickle);
  trickle.write('POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\nabc');
  const [stalledText, trickleText] = await Promise.all([stalledDone, trickleDone]);
  assert.match(stalledText, /^HTTP\/1\.1 408/);
  assert.match(trickleText, /^HTTP\/1\.1 408/);
  assert.equal((await send(port, 'GET', '/echo')).status, 200);
});

test('past maxConnections, new connections are closed at once; the open ones keep working', async () => {
  const sockets = await Promise.all(Array.from({ length: 8 }, () => openSocket()));
  const extra = await openSocket();
  const extraText = await closed(extra);
  assert.equal(extraText, '', 'closed without an answer');
  // One of the eight still gets an answer on its keep-alive connection.
  const answer = closed(sockets[0]!);
  sockets[0]!.write('GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  assert.match(await answer, /^HTTP\/1\.1 200/);
  for (const socket of sockets) socket.destroy();
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal((await send(port, 'GET', '/echo')).status, 200);
});
