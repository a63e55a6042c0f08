// The chat example in a real daemon (a deploy root unpacked from its release tarball, run by its
// own bin/kernel), with real `ws` clients chatting in rooms while the CLI upgrades to 0.2.0 (a
// state migration: rooms get a history), downgrades to 0.1.0 (the history is dropped) and back,
// five swaps in all. Every member of a room is the witness of every other: it must get each
// sender's messages exactly once, in the order sent, with none missing, and no connection may
// close. Then a kill -9: the next kernel forgets the members its last checkpoint still lists.

import assert from 'node:assert/strict';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { killAndWait, waitUntil } from '../helpers.ts';
import { ChatClient, buildConfigs, chatConfig, chatVersions, cli, cliAsync, frontDoor, startDeployRoot, type Frame } from './helpers.ts';

const built = buildConfigs(chatVersions.map(chatConfig));
const roots: string[] = [];

after(() => {
  for (const root of roots) cli(root, 'stop');
});

const ROOMS = 4;
const PER_ROOM = 6;
const WINDOW = 4;

test('chat connections stay open, and every message reaches every member of its room once and in order, through upgrades, downgrades and the migration', async () => {
  const [v1, v2] = await built;
  const { root, port } = await startDeployRoot(v1!.tarball, roots);

  const clients: ChatClient[] = [];
  for (let i = 0; i < ROOMS * PER_ROOM; i++) clients.push(await ChatClient.connect(port, `room=r${i % ROOMS}&name=c${i}`));
  const roomOf = (index: number) => `r${index % ROOMS}`;
  // Each client keeps WINDOW lines on their way: one more each time one of its own comes back.
  const sent = clients.map(() => 0);
  let chatting = true;
  for (const [index, client] of clients.entries()) {
    const sayNext = () => client.say(`line ${++sent[index]!} of c${index}`, sent[index]);
    client.ws.on('message', (data, isBinary) => {
      if (isBinary || !chatting) return;
      const frame = JSON.parse(data.toString()) as Frame;
      if (frame.type === 'said' && frame.from === client.id) sayNext();
    });
    for (let i = 0; i < WINDOW; i++) sayNext();
  }

  const swaps: Array<[verb: string, source: string, release: string]> = [
    ['upgrade', v2!.tarball, '0.2.0'],
    ['downgrade', '0.1.0', '0.1.0'],
    ['upgrade', '0.2.0', '0.2.0'],
    ['downgrade', '0.1.0', '0.1.0'],
    ['upgrade', '0.2.0', '0.2.0'],
  ];
  const saidBy = (release: string) => clients.reduce((total, client) => total + client.said().filter((frame) => frame.release === release).length, 0);
  await waitUntil('the chat to get going', () => saidBy('0.1.0') > 200);
  for (const [verb, source, release] of swaps) {
    const before = saidBy(release);
    await cliAsync(root, verb, source);
    await waitUntil(`messages from ${release}'s code after ${verb} ${source}`, () => saidBy(release) > before + 100);
  }

  // Every client's last line reaches its whole room; then the load stops.
  chatting = false;
  const final = [...sent];
  await waitUntil('every last line to reach its room', () =>
    clients.every((client, index) => clients.every((sender, from) => roomOf(from) !== roomOf(index) || client.said().some((frame) => frame.from === sender.id && frame.seq === final[from]))),
  );

  for (const [index, client] of clients.entries()) {
    assert.equal(client.closed, null, `c${index} stayed connected`);
    for (const [from, sender] of clients.entries()) {
      if (roomOf(from) !== roomOf(index)) {
        assert.equal(client.said().filter((frame) => frame.from === sender.id).length, 0, `c${index} heard nothing from another room`);
        continue;
      }
      const seqs = client.said().flatMap((frame) => (frame.from === sender.id ? [frame.seq as number] : []));
      // Exactly once and in order: 1, 2, ... up to the last line sent, nothing missing or repeated.
      assert.deepEqual(seqs, Array.from({ length: final[from]! }, (_, i) => i + 1), `c${index} heard c${from}'s lines once each, in order`);
    }
  }
  const total = final.reduce((sum, count) => sum + count, 0);
  assert.ok(total > 1000, `${total} lines were said`);

  // 0.2.0 kept the room's history since the last migration up: a newcomer is given its last 20 lines.
  const witness = clients[0]!.said().slice(-20);
  const newcomer = await ChatClient.connect(port, 'room=r0&name=newcomer');
  const welcome = newcomer.frames.find((frame) => frame.type === 'welcome')!;
  assert.equal(welcome.release, '0.2.0');
  assert.deepEqual(
    (welcome.history as Array<{ text: string }>).map((line) => line.text),
    witness.map((frame) => frame.text),
  );
  const stats = await frontDoor(root);
  assert.equal(stats.websockets!.open, clients.length + 1);
  assert.deepEqual(stats.listeners[0]!.websockets, ['/chat -> chat']);

  // A kill -9 ends every connection with the kernel, but the last checkpoint still lists the
  // members: the next kernel's `restarted([])` drops them, so a newcomer finds its room empty.
  const killed = Date.now();
  await waitUntil('a checkpoint after the last line', async () => ((await stat(join(root, 'var', 'state', 'chat.ckpt')).catch(() => null))?.mtimeMs ?? 0) > killed);
  await killAndWait(Number(cli(root, 'pid').stdout.trim()));
  const started = cli(root, 'start');
  assert.equal(started.status, 0, started.stderr + started.stdout);
  const alone = await ChatClient.connect((await frontDoor(root)).listeners[0]!.port, 'room=r1');
  assert.equal(alone.frames[0]!.members, 1);
  assert.equal(cli(root, 'stop').status, 0);
});
