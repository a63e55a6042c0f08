// The control socket and a client that stops half-way through a frame: after the partial-frame
// timeout (10 s in the kernel; 1 s here, through the option, so the test need not wait 10 s) the
// server closes that connection (it would otherwise hold the connection and its buffer forever),
// while a connection that is merely idle between requests stays open.

import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { encodeFrame } from '../../kernel/common/control-protocol.ts';
import { ControlServer } from '../../kernel/main/control-server.ts';
import { waitUntil } from '../helpers.ts';
import { tempDir } from '../release/helpers.ts';

const COOKIE = 'c0ffee'.padEnd(64, '0');
const PARTIAL_FRAME_TIMEOUT_MS = 1000;

function watched(path: string): Promise<{ socket: Socket; closed: () => boolean }> {
  return new Promise((resolve, reject) => {
    const socket = connect(path);
    let closed = false;
    socket.on('close', () => (closed = true));
    socket.on('error', () => undefined);
    socket.once('connect', () => resolve({ socket, closed: () => closed }));
    socket.once('error', reject);
  });
}

test('a half-sent frame is dropped after the partial-frame timeout; an idle connection is kept', { timeout: 60_000 }, async () => {
  const path = join(await tempDir('theseus-control-slow-'), 'kernel.sock');
  const server = await ControlServer.listen(path, COOKIE, async () => 'answered', { partialFrameTimeoutMs: PARTIAL_FRAME_TIMEOUT_MS });
  try {
    const partial = await watched(path);
    const idle = await watched(path);
    const served = await watched(path);
    // 4 bytes of length saying 100, then 10 of them: the rest never comes.
    const header = Buffer.alloc(4);
    header.writeUInt32BE(100, 0);
    partial.socket.write(Buffer.concat([header, Buffer.from('{"v":1,"co')]));
    // A complete request, answered: nothing is left half-read on this one.
    let answered = false;
    served.socket.on('data', () => (answered = true));
    served.socket.write(encodeFrame({ v: 1, cookie: COOKIE, id: 1, op: 'ping', args: {} }));
    await waitUntil('the complete request to be answered', () => answered, { timeoutMs: 5000 });

    await waitUntil('the server to close the connection with a half-sent frame', partial.closed, { timeoutMs: PARTIAL_FRAME_TIMEOUT_MS + 5000, intervalMs: 50 });
    // The other two had the same silence and nothing half-read: still open.
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.equal(idle.closed(), false, 'an idle connection that sent nothing is kept');
    assert.equal(served.closed(), false, 'an idle connection between requests is kept');
    idle.socket.destroy();
    served.socket.destroy();
  } finally {
    await server.close();
  }
});
