// Typed doors at the HTTP front door: a handler whose schema asks more of the request than the
// front door guarantees (here a decimal query parameter) never sees a request that does not
// match; the client gets 400 with the E_ARGS_INVALID message saying what did not, and the state
// is as it was. A stateful service (the batch path) and a pooled one; real sockets and threads.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Kernel } from '../../kernel/index.ts';
import { HttpFrontDoor } from '../../kernel/main/http-front-door.ts';
import { fixture, logCollector } from '../helpers.ts';
import { oneListener, send } from './helpers.ts';

let kernel: Kernel;
let door: HttpFrontDoor;
let port: number;

before(async () => {
  kernel = await Kernel.start({
    release: '1',
    services: { tally: { entry: fixture('typed-tally') }, squares: { entry: fixture('typed-pooled'), pool: { size: 2 } } },
    ...logCollector(),
  });
  door = new HttpFrontDoor({
    callBatch: (service, calls, encoding) => kernel.callBatch(service, calls, encoding),
    concurrent: (service) => kernel.isPooled(service),
    log: () => {},
    closeGraceMs: 1000,
  });
  const routes = [
    { method: 'GET' as const, path: '/add', service: 'tally', handler: 'httpAdd' },
    { method: 'GET' as const, path: '/square', service: 'squares', handler: 'httpSquare' },
  ];
  await door.apply(oneListener(routes, { maxBodyBytes: 1024, maxReplyBytes: 4096, requestTimeoutMs: 5000 }));
  port = door.stats().listeners[0]!.port;
});

after(async () => {
  await door.close();
  await kernel.stop();
});

/** A 400 whose body names the code, the handler, and where the request did not match. */
async function assertRefused(path: string, says: RegExp): Promise<void> {
  const reply = await send(port, 'GET', path);
  assert.equal(reply.status, 400, reply.body.toString());
  const body = reply.json<{ error: string; message: string }>();
  assert.equal(body.error, 'E_ARGS_INVALID');
  assert.match(body.message, says);
}

test('a stateful handler: a request that does not match its schema is 400, names the part of the request, and changes nothing', async () => {
  assert.deepEqual((await send(port, 'GET', '/add?amount=2')).json(), { tally: 2 });
  await assertRefused('/add?amount=ten', /^tally\.httpAdd\(\) was refused: the request at \/query\/amount should be string \(matching \^\[1-9\]\[0-9\]\{0,5\}\$\), and is the string "ten"/);
  await assertRefused('/add', /the request at \/query\/amount should be string .*, and is missing/);
  // Each request of a batch is checked alone: the ones around a refused one still run.
  const replies = await Promise.all(['/add?amount=1', '/add?amount=x', '/add?amount=1'].map((path) => send(port, 'GET', path)));
  assert.deepEqual(replies.map((reply) => reply.status), [200, 400, 200]);
  assert.deepEqual((await send(port, 'GET', '/add?amount=3')).json(), { tally: 7 }, 'only the requests that matched were counted');
});

test('a pooled handler: the same 400, and the pool serves on', async () => {
  await assertRefused('/square?n=1e3', /^squares\.httpSquare\(\) was refused: the request at \/query\/n should be string \(matching \^-\?\[0-9\]\{1,6\}\$\), and is the string "1e3"/);
  assert.deepEqual((await send(port, 'GET', '/square?n=-12')).json(), { square: 144 });
});
