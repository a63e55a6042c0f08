// The baseline of `npm run bench:ws`: the chat example's protocol as a plain `ws` server in one
// process, rooms in a Map in its memory (scripts/bench/ws-chat-load.ts drives it). Run directly
// it prints its port on stdout; under PM2 it listens on PORT. On SIGINT (PM2's reload) it stops
// as such a server does: it closes its connections with 1001 and exits.
import { WebSocketServer } from 'ws';

const rooms = new Map();
let nextId = 0;
const server = new WebSocketServer({ port: Number(process.env.PORT ?? 0), host: '127.0.0.1', perMessageDeflate: false, maxPayload: 256 * 1024 });

server.on('connection', (ws, request) => {
  const query = new URL(request.url ?? '/', 'http://localhost').searchParams;
  const id = `plain-${process.pid}-${++nextId}`;
  const room = query.get('room') || 'lobby';
  const name = query.get('name') || id;
  let members = rooms.get(room);
  if (!members) rooms.set(room, (members = new Set()));
  members.add(ws);
  ws.send(JSON.stringify({ type: 'welcome', id, room, members: members.size, release: 'plain' }));
  ws.on('message', (data, isBinary) => {
    if (isBinary) return;
    let frame;
    try {
      frame = JSON.parse(data.toString());
    } catch {
      ws.send(JSON.stringify({ type: 'error', message: 'a frame must be JSON' }));
      return;
    }
    if (frame.type !== 'say') return;
    const said = JSON.stringify({ type: 'said', room, from: id, name, text: frame.text, seq: frame.seq, release: 'plain' });
    for (const member of members) member.send(said);
  });
  ws.on('close', () => members.delete(ws));
});

server.on('listening', () => {
  if (process.send) process.send('ready');
  else process.stdout.write(`${server.address().port}\n`);
});

process.on('SIGINT', () => {
  for (const ws of server.clients) ws.close(1001, 'the server is going away');
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
});
