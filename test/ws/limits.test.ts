// The WebSocket front door's limits and failures, in one real daemon (test/fixtures/ws-chat: the
// chat example behind small limits, with frames that misbehave on purpose), with real `ws`
// clients: an oversized frame, handlers that throw or return garbage, a client that stops
// reading, a flood of connections, a peer that stops answering pings, and a worker crash with
// sockets open. Each one is confined to its own connection: the others chat on. Last, kernel stop
// closes what is open with 1001.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { root as repo, waitUntil } from '../helpers.ts';
import { dashboardInfo } from '../../kernel/cli/dashboard.ts';
import { ChatClient, buildConfigs, cli, cliAsync, frontDoor, refusedUpgrade, startDeployRoot } from './helpers.ts';

const roots: string[] = [];
const daemon = buildConfigs([join(repo, 'test', 'fixtures', 'ws-chat', 'theseus.config.ts')]).then(([release]) => startDeployRoot(release!.tarball, roots));

after(() => {
  for (const root of roots) cli(root, 'stop');
});

/** A line said in `room` reaches every client given, the sender too. */
async function chatsOn(sender: ChatClient, listeners: ChatClient[], text: string): Promise<void> {
  sender.say(text);
  for (const client of [sender, ...listeners]) await client.next('said', (frame) => frame.text === text);
}

async function closeAll(clients: ChatClient[]): Promise<void> {
  for (const client of clients) client.ws.close();
  for (const client of clients) await client.closedWith();
}

test('a frame over maxPayloadBytes closes its connection with 1009; the others chat on', async () => {
  const { port } = await daemon;
  const [big, other] = [await ChatClient.connect(port, 'room=payload'), await ChatClient.connect(port, 'room=payload')];
  big.ws.send('x'.repeat(8192));
  assert.equal((await big.closedWith()).code, 1009);
  await chatsOn(other, [], 'still here');
  await closeAll([other]);
});

test('a handler that throws, or returns a bad result, closes only its own connection with 1011; the service serves on', async () => {
  const { port } = await daemon;
  const [thrower, garbage, bystander] = [await ChatClient.connect(port, 'room=t'), await ChatClient.connect(port, 'room=t'), await ChatClient.connect(port, 'room=t')];
  thrower.ws.send('throw');
  garbage.ws.send('bad-result');
  assert.deepEqual(await thrower.closedWith(), { code: 1011, reason: 'E_HANDLER_FAILED' });
  assert.deepEqual(await garbage.closedWith(), { code: 1011, reason: 'E_WS_BAD_RESULT' });
  // Their close handlers ran: the room was told they left, and the bystander chats on alone.
  await bystander.next('left', (frame) => frame.id === thrower.id);
  await bystander.next('left', (frame) => frame.id === garbage.id);
  await chatsOn(bystander, [], 'served on');
  await closeAll([bystander]);
});

test('a client that stops reading is closed with 1013, and what the kernel holds for it stays bounded', async () => {
  const { root, port } = await daemon;
  const slow = await ChatClient.connect(port, 'room=slow');
  const limit = (await frontDoor(root)).websockets!.limits.maxBufferedBytes;
  slow.ws.pause();
  // Ask for 256 KiB every 100 ms until the kernel gives up on the client: the operating system's
  // socket buffers take the first megabytes, then the kernel's own buffer grows to the limit. (The
  // asking also keeps the connection alive for the pings, which it no longer answers.)
  let asked = 0;
  const asking = setInterval(() => {
    if (slow.ws.readyState !== slow.ws.OPEN) return;
    slow.ws.send('flood:256');
    asked += 256;
  }, 100);
  try {
    await waitUntil('the kernel to close the client that does not read', async () => {
      const stats = (await frontDoor(root)).websockets!;
      // Never more than the limit plus one frame (and the close frame), whatever was asked for.
      assert.ok(stats.bufferedBytes <= limit + 2048, `${stats.bufferedBytes} bytes held for the client (limit ${limit})`);
      assert.equal(stats.closedDead, 0, 'the client was taken for dead before it was found slow');
      return stats.closedSlow === 1;
    });
  } finally {
    clearInterval(asking);
  }
  slow.ws.resume();
  assert.deepEqual(await slow.closedWith(), { code: 1013, reason: 'the client did not read its messages' });
  const received = slow.frames.filter((frame) => frame.type === 'text').length;
  assert.ok(received < asked, `the client got ${received} of the ${asked} frames asked for: nothing more was sent once it was closed`);
});

test('a client that sends faster than its service handles is not read past maxWaitingEvents: every frame is handled, in order, and the queue stays bounded', async () => {
  const { root, port } = await daemon;
  const fast = await ChatClient.connect(port, 'room=fast');
  const limit = (await frontDoor(root)).websockets!.limits.maxWaitingEvents;
  // 1000 frames of 1 KiB at once, each 1 ms of work for the service: the main thread could read
  // them all in a few milliseconds, and without backpressure would hold all 1000 for it.
  const frames = 1000;
  const pad = 'p'.repeat(1024);
  for (let i = 0; i < frames; i++) fast.ws.send(`work:${i}:${pad}`);
  const done = () => fast.frames.filter((frame) => frame.type === 'text' && String(frame.text).startsWith('done:')).map((frame) => Number(String(frame.text).slice(5)));
  await waitUntil(`all ${frames} frames handled`, () => done().length === frames, { timeoutMs: 120_000 });
  assert.deepEqual(done(), Array.from({ length: frames }, (_, i) => i), 'each handled once, in the order sent');
  const stats = (await frontDoor(root)).websockets!;
  assert.ok(stats.inputPauses >= 1, 'the connection was paused at least once');
  // One socket read (up to 64 KiB, so about 64 of these frames) may still arrive after the pause.
  assert.ok(stats.maxWaitingEvents <= limit + 128, `${stats.maxWaitingEvents} events waited in the main thread (limit ${limit})`);
  assert.equal(stats.closedDead, 0, 'a paused connection was taken for dead');
  await chatsOn(fast, [], 'still chatting');
  await closeAll([fast]);
});

test('upgrades past maxConnections are refused with 503, unknown paths with 404; a closed connection makes room', async () => {
  const { root, port } = await daemon;
  const stats = (await frontDoor(root)).websockets!;
  const clients: ChatClient[] = [];
  for (let i = stats.open; i < stats.limits.maxConnections; i++) clients.push(await ChatClient.connect(port, 'room=flood'));
  const refusals = await Promise.all(Array.from({ length: 8 }, () => refusedUpgrade(port, '/chat?room=flood')));
  for (const refusal of refusals) {
    assert.equal(refusal.status, 503);
    assert.equal((JSON.parse(refusal.body) as { error: string }).error, 'E_HTTP_BUSY');
  }
  assert.equal((await refusedUpgrade(port, '/nope')).status, 404);
  // The connections held are untouched, and HTTP on the same listener still answers.
  await chatsOn(clients[0]!, clients.slice(1), 'all of us');
  assert.equal(await (await fetch(`http://127.0.0.1:${port}/hello`)).text(), 'hello');
  await closeAll(clients.slice(0, 1));
  await waitUntil('the kernel to count the close', async () => (await frontDoor(root)).websockets!.open < stats.limits.maxConnections);
  const another = await ChatClient.connect(port, 'room=flood');
  await closeAll([another, ...clients.slice(1)]);
});

test('a peer that stops answering pings is ended', async () => {
  const { root, port } = await daemon;
  const dead = await ChatClient.connect(port, 'room=dead');
  const before = (await frontDoor(root)).websockets!.closedDead;
  dead.ws.pause();
  await waitUntil('the kernel to end the silent connection', async () => (await frontDoor(root)).websockets!.closedDead > before);
  dead.ws.resume();
  assert.equal((await dead.closedWith()).code, 1006);
});

test('a worker crash closes no connection: the restarted worker is told which are open, and the room works again', async () => {
  const { root, port } = await daemon;
  const [crasher, friend] = [await ChatClient.connect(port, 'room=k&name=crasher'), await ChatClient.connect(port, 'room=k&name=friend')];
  await chatsOn(friend, [crasher], 'before');
  crasher.ws.send('crash');
  await waitUntil('the chat worker to be restarted', async () => {
    const status = JSON.parse(await cliAsync(root, 'status', '--json')) as { services: Array<{ restarts: number; state: string }> };
    return status.services[0]!.restarts === 1 && status.services[0]!.state === 'running';
  });
  // The worker restarted from init() (checkpoints are off): only `restarted` put the two back in room k.
  await chatsOn(friend, [crasher], 'after');
  await chatsOn(crasher, [friend], 'me too');
  assert.equal(crasher.closed, null);
  assert.equal(friend.closed, null);
  await closeAll([crasher, friend]);
});

test('/metrics counts the WebSocket connections, what the kernel closed and why, and the input pauses, as kernel status does', async () => {
  const { root } = await daemon;
  const stats = (await frontDoor(root)).websockets!;
  const { metricsUrl, token } = await dashboardInfo(root);
  const scraped = await fetch(metricsUrl, { headers: { authorization: `Bearer ${token}` } });
  assert.equal(scraped.status, 200);
  const body = await scraped.text();
  const value = (series: string) => Number(new RegExp(`^${series.replace(/[{}"]/g, (c) => `\\${c}`)} (\\S+)$`, 'm').exec(body)?.[1] ?? NaN);
  // The tests above closed one slow client, two whose handlers failed, a dead peer, and paused a fast one.
  assert.equal(value('theseus_websocket_closed_by_kernel_total{reason="slow"}'), stats.closedSlow);
  assert.equal(value('theseus_websocket_closed_by_kernel_total{reason="failed"}'), stats.closedFailed);
  assert.equal(value('theseus_websocket_closed_by_kernel_total{reason="dead"}'), stats.closedDead);
  assert.ok(stats.closedSlow >= 1 && stats.closedFailed >= 2 && stats.closedDead >= 1, JSON.stringify(stats));
  assert.equal(value('theseus_websocket_input_pauses_total'), stats.inputPauses);
  assert.ok(stats.inputPauses >= 1);
  assert.equal(value('theseus_websocket_upgrades_refused_total'), stats.refused);
  assert.ok(value('theseus_websocket_connections_opened_total') >= stats.opened - 1, body);
  assert.ok(Number.isFinite(value('theseus_websocket_connections')), body);
});

test('kernel stop closes every connection with 1001, after the events already received were handled', async () => {
  const { root, port } = await daemon;
  const [speaker, listener] = [await ChatClient.connect(port, 'room=bye'), await ChatClient.connect(port, 'room=bye')];
  speaker.say('last words');
  const stopped = cli(root, 'stop');
  assert.equal(stopped.status, 0, stopped.stderr + stopped.stdout);
  for (const client of [speaker, listener]) {
    assert.deepEqual(await client.closedWith(), { code: 1001, reason: 'the server is going away' });
    // Said before the stop began: handled and delivered before the close.
    assert.ok(client.said().some((frame) => frame.text === 'last words'));
  }
});

test('a service failed for good (past its restart limit) closes its connections with 1011 E_SERVICE_DOWN, and new ones are refused with 503', async () => {
  const [release] = await buildConfigs([join(repo, 'test', 'fixtures', 'ws-chat', 'fragile.config.ts')]);
  const { root, port } = await startDeployRoot(release!.tarball, roots);
  const [crasher, bystander] = [await ChatClient.connect(port, 'room=doomed'), await ChatClient.connect(port, 'room=doomed')];
  crasher.ws.send('crash');
  // Nothing would ever answer these connections again: they are closed, not left hanging.
  assert.deepEqual(await bystander.closedWith(), { code: 1011, reason: 'E_SERVICE_DOWN' });
  assert.deepEqual(await crasher.closedWith(), { code: 1011, reason: 'E_SERVICE_DOWN' });
  const refused = await refusedUpgrade(port, '/chat?room=late');
  assert.equal(refused.status, 503);
  assert.match(refused.body, /E_SERVICE_DOWN/);
  assert.equal(cli(root, 'stop').status, 0);
});
