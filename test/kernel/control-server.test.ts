// The kernel's side of the control socket (kernel/main/control-server.ts), in this process with a
// handler of the test's own, over a real Unix socket: what reaches the handler, what comes back,
// and every way a frame is refused. Fast on purpose: `npm run mutate` runs it for every mutant of
// control-server.ts (the daemon's end-to-end checks are in test/cli/daemon.test.ts).

import assert from 'node:assert/strict';
import { stat, writeFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { ControlConnection, send } from '../../kernel/cli/control-client.ts';
import { MAX_FRAME_BYTES, decodeFrames, encodeFrame, type ControlRequest, type PhaseEvent } from '../../kernel/common/control-protocol.ts';
import { TheseusError, theseusError } from '../../kernel/common/errors.ts';
import type { LogRecord } from '../../kernel/common/protocol.ts';
import { ControlServer, type ControlChannel, type ControlHandler } from '../../kernel/main/control-server.ts';
import { waitUntil } from '../helpers.ts';
import { tempDir } from '../release/helpers.ts';

/** 64 hex characters, as the daemon's cookie is. */
const COOKIE = 'c0ffee'.padEnd(64, '0');
/**
 * How long anything here may take. Short on purpose, a local socket answers in a millisecond; and
 * shorter still under `npm run mutate` (THESEUS_TEST_DEADLINE_MS), where a mutant that leaves a
 * request unanswered should fail its test at once rather than run into Stryker's timeout.
 */
const DEADLINE_MS = Number(process.env.THESEUS_TEST_DEADLINE_MS) || 5000;
const within = { timeoutMs: DEADLINE_MS };

const servers: ControlServer[] = [];
after(async () => {
  await Promise.all(servers.map((server) => server.close()));
});

/** A control server on a fresh socket, with the requests its handler received. */
async function startServer(handler: ControlHandler = async (request) => ({ op: request.op, args: request.args })) {
  const dir = await tempDir('theseus-control-');
  const path = join(dir, 'kernel.sock');
  const received: ControlRequest[] = [];
  const server = await ControlServer.listen(path, COOKIE, (request, channel) => {
    received.push(request);
    return handler(request, channel);
  });
  servers.push(server);
  return { server, path, received };
}

function frame(fields: Record<string, unknown>): Record<string, unknown> {
  return { v: 1, cookie: COOKIE, id: 1, op: 'ping', args: {}, ...fields };
}

/** Reads this process's umask without changing it. */
function currentUmask(): number {
  const mask = process.umask(0o022);
  process.umask(mask);
  return mask;
}

interface RawExchange {
  frames: Array<{ id: number; kind: string; ok?: boolean; result?: unknown; error?: { code: string; message: string; phase?: string } }>;
  /** Whether the server ended the connection. */
  closed: boolean;
}

/**
 * Connects, writes `chunks` one by one (a pause between them, so they arrive as separate reads),
 * and collects the server's frames until it closes the connection or `settleMs` pass after the
 * last one: what a client with no protocol knowledge would see.
 */
async function exchange(path: string, chunks: Buffer[], settleMs = 150): Promise<RawExchange> {
  const socket = connect(path);
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  let buffered = Buffer.alloc(0);
  let closed = false;
  socket.on('data', (chunk: Buffer) => (buffered = Buffer.concat([buffered, chunk])));
  socket.on('error', () => undefined);
  socket.once('end', () => (closed = true));
  socket.once('close', () => (closed = true));
  for (const [index, chunk] of chunks.entries()) {
    if (index > 0) await new Promise((resolve) => setTimeout(resolve, 30));
    if (!socket.destroyed) socket.write(chunk);
  }
  const started = Date.now();
  await waitUntil('the server to close the connection or to go quiet', () => closed || Date.now() - started >= settleMs, within);
  socket.destroy();
  const decoded = decodeFrames(buffered);
  assert.ok(!('error' in decoded), 'the server sent well-formed frames');
  return { frames: decoded.frames as RawExchange['frames'], closed };
}

/** A frame as [id, kind, ok, error code]. */
function outcome(f: RawExchange['frames'][number]): [number, string, boolean | undefined, string | undefined] {
  return [f.id, f.kind, f.ok, f.error?.code];
}

/** `promise`, or a failure naming `what` once DEADLINE_MS has passed. */
async function withinDeadline<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} did not finish within ${DEADLINE_MS} ms`)), DEADLINE_MS)));
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

function openSocket(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(path);
    socket.once('connect', () => resolve(socket));
    socket.once('error', reject);
  });
}

test('listen: the socket is owner-only, and the process umask is left as it was, even when listening fails', async () => {
  const before = currentUmask();
  const { path } = await startServer();
  assert.equal((await stat(path)).mode & 0o777, 0o600);
  assert.equal(currentUmask(), before, 'the umask was restored after listen');

  // A path already taken (here by a plain file) cannot be listened on: the error comes back.
  const taken = join(await tempDir('theseus-control-'), 'taken.sock');
  await writeFile(taken, 'not a socket');
  await assert.rejects(ControlServer.listen(taken, COOKIE, async () => null), { code: 'EADDRINUSE' });
  assert.equal(currentUmask(), before, 'the umask was restored after a failed listen');
});

test('a request with the cookie reaches the handler once; its result comes back under its id, undefined as null', async () => {
  const { path, received } = await startServer(async (request) => (request.op === 'status' ? undefined : { echoed: request.args }));
  assert.deepEqual(await send(path, frame({ id: 41, op: 'call', args: { service: 's', method: 'm', args: [1, 'two'] } }), 'call', '/root', within), {
    echoed: { service: 's', method: 'm', args: [1, 'two'] },
  });
  assert.deepEqual(received.map((request) => [request.id, request.op]), [[41, 'call']]);

  const raw = await exchange(path, [encodeFrame(frame({ id: 7, op: 'status' }))]);
  assert.deepEqual(raw.frames, [{ id: 7, kind: 'result', ok: true, result: null }]);
  assert.equal(raw.closed, false, 'a served connection stays open for more requests');
});

test('events and log lines reach the client under the request\'s id before its result; `closed` resolves when the client goes', async () => {
  let channelOfLogs: ControlChannel | null = null;
  const { path } = await startServer(async (request, channel) => {
    if (request.op === 'logs') {
      channelOfLogs = channel;
      await channel.closed;
      return null;
    }
    channel.emit({ phase: 'check', ms: 1.5 });
    channel.log({ level: 'info', service: 'kernel', release: '1.0.0', message: 'hello', time: 0 } as unknown as LogRecord);
    return 'done';
  });
  const events: PhaseEvent[] = [];
  const logs: LogRecord[] = [];
  assert.equal(await send(path, frame({ id: 3, op: 'upgrade', args: { source: '/x', commit: true } }), 'upgrade', '/root', { ...within, onEvent: (e) => events.push(e), onLog: (r) => logs.push(r) }), 'done');
  assert.deepEqual(events, [{ phase: 'check', ms: 1.5 }]);
  assert.deepEqual(logs.map((r) => r.message), ['hello']);
  const raw = await exchange(path, [encodeFrame(frame({ id: 9, op: 'describe' }))]);
  assert.deepEqual(raw.frames.map((f) => [f.id, f.kind]), [[9, 'event'], [9, 'log'], [9, 'result']]);

  // A `logs` stream ends with its connection: the handler sees `closed` resolve.
  const streaming = await openSocket(path);
  streaming.write(encodeFrame(frame({ id: 5, op: 'logs' })));
  await waitUntil('the logs request to reach the handler', () => channelOfLogs !== null, within);
  let ended = false;
  void channelOfLogs!.closed.then(() => (ended = true));
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(ended, false, 'closed is pending while the client is connected');
  streaming.destroy();
  await waitUntil('closed to resolve once the client went away', () => ended, within);
});

test('a handler that fails answers its request with the code, message and phase; a thrown non-error is reported as E_INTERNAL', async () => {
  const { path } = await startServer(async (request) => {
    if (request.op === 'upgrade') {
      const error = theseusError('E_SWAP_IN_PROGRESS');
      error.phase = 'prepare';
      throw error;
    }
    if (request.op === 'commit') throw new Error('plain failure');
    throw 'a bare string';
  });
  const upgrade = await exchange(path, [encodeFrame(frame({ id: 2, op: 'upgrade', args: { source: '/x', commit: false } }))]);
  assert.deepEqual(upgrade.frames, [{ id: 2, kind: 'result', ok: false, error: { code: 'E_SWAP_IN_PROGRESS', message: theseusError('E_SWAP_IN_PROGRESS').message, phase: 'prepare' } }]);
  const commit = await exchange(path, [encodeFrame(frame({ id: 3, op: 'commit' }))]);
  assert.deepEqual(commit.frames, [{ id: 3, kind: 'result', ok: false, error: { code: 'E_INTERNAL', message: 'plain failure' } }]);
  const stop = await exchange(path, [encodeFrame(frame({ id: 4, op: 'stop' }))]);
  assert.deepEqual(stop.frames, [{ id: 4, kind: 'result', ok: false, error: { code: 'E_INTERNAL', message: 'a bare string' } }]);
  // A failed request does not end the connection.
  assert.equal(stop.closed, false);
});

test('a wrong cookie is refused before anything else, whatever its length, type or the frame\'s shape; the connection is closed', async () => {
  const { path, received } = await startServer();
  const flip = (c: string) => (c === 'a' ? 'b' : 'a');
  const wrong: unknown[] = [
    flip(COOKIE[0]!) + COOKIE.slice(1),
    COOKIE.slice(0, -1) + flip(COOKIE.at(-1)!),
    COOKIE.slice(0, -1),
    `${COOKIE}0`,
    '',
    42,
    null,
    { toString: () => COOKIE },
  ];
  for (const [index, cookie] of wrong.entries()) {
    const raw = await exchange(path, [encodeFrame(frame({ id: 10 + index, cookie }))]);
    assert.deepEqual(raw.frames.map(outcome), [[10 + index, 'result', false, 'E_BAD_COOKIE']], `cookie #${index}`);
    assert.equal(raw.closed, true, `cookie #${index}: the connection was closed`);
  }
  const { cookie: _omitted, ...noCookie } = frame({ id: 30 });
  const missing = await exchange(path, [encodeFrame(noCookie)]);
  assert.deepEqual(missing.frames.map(outcome), [[30, 'result', false, 'E_BAD_COOKIE']]);
  // Checked before the shape: a stranger learns nothing about the protocol.
  const strangerWithBadShape = await exchange(path, [encodeFrame({ cookie: 'nope', op: 'format-disk' })]);
  assert.deepEqual(strangerWithBadShape.frames.map(outcome), [[0, 'result', false, 'E_BAD_COOKIE']]);
  for (const notAnObject of [null, 7, 'text', [COOKIE]]) {
    const raw = await exchange(path, [encodeFrame(notAnObject)]);
    assert.deepEqual(raw.frames.map(outcome), [[0, 'result', false, 'E_BAD_COOKIE']], JSON.stringify(notAnObject));
  }
  // A good frame right behind a refused one, in the same write, is not served.
  const smuggled = await exchange(path, [Buffer.concat([encodeFrame(frame({ id: 50, cookie: 'x' })), encodeFrame(frame({ id: 51 }))])]);
  assert.deepEqual(smuggled.frames.map(outcome), [[50, 'result', false, 'E_BAD_COOKIE']]);
  assert.deepEqual(received, [], 'the handler never ran');
});

test('with the cookie, a frame that is not a valid request is refused with where it is wrong; the connection is closed', async () => {
  const { path, received } = await startServer();
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    // A known op is checked against its own request, so the message names the field at fault.
    [frame({ id: 60, op: 'upgrade', args: { source: 42, commit: true } }), /^A control frame was refused: \/args\/source Expected string;/],
    [frame({ id: 64, op: 'downgrade', args: { version: 'x'.repeat(4097), commit: true } }), /^A control frame was refused: \/args\/version Expected string length less or equal to 4096;/],
    [frame({ id: 61, op: 'format-disk' }), /^A control frame was refused: \/ Expected union value;/],
    [frame({ id: 62, v: 2 }), /^A control frame was refused: \/v Expected 1;/],
    [frame({ id: 63, extra: true }), /^A control frame was refused: \/extra? /],
  ];
  for (const [bad, message] of cases) {
    const raw = await exchange(path, [encodeFrame(bad)]);
    assert.equal(raw.frames.length, 1, JSON.stringify(bad));
    assert.deepEqual(outcome(raw.frames[0]!), [bad.id, 'result', false, 'E_FRAME_INVALID']);
    assert.match(raw.frames[0]!.error!.message, message);
    assert.equal(raw.closed, true);
  }
  // An id that is not a number is answered under id 0.
  const noId = await exchange(path, [encodeFrame(frame({ id: 'seven' }))]);
  assert.deepEqual(noId.frames.map(outcome), [[0, 'result', false, 'E_FRAME_INVALID']]);
  assert.deepEqual(received, []);
});

test('a frame that declares more than the limit is refused before it is read; bytes that are not JSON are refused', async () => {
  const { path, received } = await startServer();
  const header = (size: number) => {
    const bytes = Buffer.alloc(4);
    bytes.writeUInt32BE(size, 0);
    return bytes;
  };
  const huge = await exchange(path, [header(MAX_FRAME_BYTES + 1)]);
  assert.deepEqual(huge.frames.map(outcome), [[0, 'result', false, 'E_FRAME_TOO_LARGE']]);
  assert.match(huge.frames[0]!.error!.message, new RegExp(`of ${MAX_FRAME_BYTES + 1} bytes is over the limit of ${MAX_FRAME_BYTES} bytes`));
  assert.equal(huge.closed, true);

  const garbage = await exchange(path, [Buffer.concat([header(5), Buffer.from('{{{{{')])]);
  assert.deepEqual(garbage.frames.map(outcome), [[0, 'result', false, 'E_FRAME_INVALID']]);
  assert.match(garbage.frames[0]!.error!.message, /it is not JSON/);
  assert.equal(garbage.closed, true);
  assert.deepEqual(received, []);
});

test('frames split across reads are put back together; several in one read are each answered', async () => {
  const { path, received } = await startServer();
  const whole = encodeFrame(frame({ id: 70, op: 'status' }));
  // Cut inside the length prefix, then inside the body.
  const split = await exchange(path, [whole.subarray(0, 2), whole.subarray(2, 9), whole.subarray(9)]);
  assert.deepEqual(split.frames.map(outcome), [[70, 'result', true, undefined]]);
  const many = await exchange(path, [Buffer.concat([71, 72, 73].map((id) => encodeFrame(frame({ id }))))]);
  assert.deepEqual(many.frames.map((f) => f.id).sort(), [71, 72, 73]);
  // A frame and the start of the next, then the rest of it.
  const next = encodeFrame(frame({ id: 75 }));
  const straddling = await exchange(path, [Buffer.concat([encodeFrame(frame({ id: 74 })), next.subarray(0, 6)]), next.subarray(6)]);
  assert.deepEqual(straddling.frames.map((f) => f.id), [74, 75]);
  assert.deepEqual(received.map((r) => r.id), [70, 71, 72, 73, 74, 75]);
});

test('requests on one connection are answered as each finishes, each under its own id', async () => {
  const { path } = await startServer(async (request) => {
    // The first request finishes last.
    if (request.op === 'call') await new Promise((resolve) => setTimeout(resolve, 100));
    return request.op;
  });
  const root = await tempDir('theseus-control-root-');
  // ControlConnection reads var/cookie and var/kernel.sock under a root: point one at this server.
  const { mkdir, symlink } = await import('node:fs/promises');
  await mkdir(join(root, 'var'));
  await writeFile(join(root, 'var', 'cookie'), `${COOKIE}\n`);
  await symlink(path, join(root, 'var', 'kernel.sock'));
  const connection = await ControlConnection.open(root);
  try {
    const order: string[] = [];
    const slow = connection.request('call', { service: 's', method: 'm', args: [] }, within).then((result) => order.push(String(result)));
    const fast = connection.request('status', {}, within).then((result) => order.push(String(result)));
    await Promise.all([slow, fast]);
    assert.deepEqual(order, ['status', 'call']);
  } finally {
    connection.close();
  }
});

test('at most 256 connections at once: the next is told so and closed; a closed one frees its place', async () => {
  const { path } = await startServer();
  const held: Socket[] = [];
  /** Opens a connection and keeps it, once the server has served a request on it (so it counts). */
  const holdServed = async (id: number) => {
    const socket = await openSocket(path);
    held.push(socket);
    let answered = false;
    socket.on('data', (chunk: Buffer) => (answered ||= chunk.includes(`"id":${id}`)));
    socket.write(encodeFrame(frame({ id })));
    await waitUntil(`an answer to request ${id} on a held connection`, () => answered, within);
  };
  try {
    for (let i = 0; i < 255; i++) held.push(await openSocket(path));
    await holdServed(80); // the 256th connection is served
    const refused = await exchange(path, [encodeFrame(frame({ id: 81 }))]);
    assert.deepEqual(refused.frames.map(outcome), [[0, 'result', false, 'E_FRAME_INVALID']], 'the 257th is refused');
    assert.match(refused.frames[0]!.error!.message, /already has 256 control connections open/);
    assert.equal(refused.closed, true);
    // Closing one frees its place (once the server has seen it close).
    held.pop()!.destroy();
    await waitUntil('a new connection to be served after one closed', async () => (await exchange(path, [encodeFrame(frame({ id: 82 }))])).frames[0]?.ok === true, within);
  } finally {
    for (const socket of held) socket.destroy();
  }
});

test('a client that goes away while its answer is being written does not take the server down', async () => {
  // An answer too large for the socket's buffers, to a client that reads a little and hangs up:
  // the server's writes meet a closed socket (EPIPE), an error the server must handle itself.
  const big = 'x'.repeat(8 * 1024 * 1024);
  const { path } = await startServer(async (request) => (request.op === 'describe' ? big : 'still here'));
  for (let attempt = 0; attempt < 3; attempt++) {
    const socket = await openSocket(path);
    socket.on('error', () => undefined);
    const gone = new Promise((resolve) => socket.once('close', resolve));
    socket.once('data', () => socket.destroy());
    socket.write(encodeFrame(frame({ id: 90, op: 'describe' })));
    await withinDeadline(gone, 'the client hanging up');
  }
  // Still serving (an unhandled socket error would have ended this process instead).
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(await send(path, frame({ id: 91, op: 'status' }), 'status', '/root', within), 'still here');
});

test('close() ends open connections, stops listening and removes the socket file', async () => {
  const { server, path } = await startServer();
  const open = await openSocket(path);
  let ended = false;
  open.on('close', () => (ended = true));
  open.on('error', () => undefined);
  await withinDeadline(server.close(), 'close()');
  await waitUntil('the open connection to be closed by close()', () => ended, within);
  await assert.rejects(stat(path), { code: 'ENOENT' });
  await assert.rejects(send(path, frame({}), 'ping', '/root', within), (error: TheseusError) => error.code === 'E_KERNEL_NOT_RUNNING');
});
