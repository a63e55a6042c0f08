// A terminal client for the chat example: each line typed is said to the room, each frame that
// comes is printed. `/join <room>` moves to another room; Ctrl-D leaves.
//
//   node services/chat/client.mjs 'ws://127.0.0.1:<port>/chat?room=lobby&name=ada'
import { createInterface } from 'node:readline';
import WebSocket from 'ws';

const url = process.argv[2];
if (!url) {
  process.stderr.write("usage: node services/chat/client.mjs 'ws://127.0.0.1:<port>/chat?room=lobby&name=ada'\n");
  process.exit(2);
}
const ws = new WebSocket(url);
let seq = 0;
ws.on('open', () => {
  const lines = createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    const join = /^\/join\s+(\S+)/.exec(line);
    ws.send(JSON.stringify(join ? { type: 'join', room: join[1] } : { type: 'say', text: line, seq: ++seq }));
  });
  lines.on('close', () => ws.close(1000, 'bye'));
});
ws.on('message', (data) => process.stdout.write(`${data}\n`));
ws.on('close', (code, reason) => {
  process.stdout.write(`closed: ${code} ${reason}\n`);
  process.exit(0);
});
ws.on('error', (error) => {
  process.stderr.write(`${error.message}\n`);
  process.exit(1);
});
