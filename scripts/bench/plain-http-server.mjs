// The baseline of `npm run bench:http`: a plain single-threaded node:http server doing the same
// work as the sequence service behind the front door (hand out the next number as JSON), in its
// main thread. It prints its port on stdout, then serves until killed.
import { createServer } from 'node:http';

let next = 456;
const server = createServer({ keepAlive: true }, (request, response) => {
  request.resume();
  if (request.method === 'GET' && request.url === '/next') {
    const payload = JSON.stringify({ number: next++, release: 'plain' });
    response.setHeader('content-type', 'application/json; charset=utf-8');
    response.setHeader('content-length', Buffer.byteLength(payload));
    response.writeHead(200);
    response.end(payload);
    return;
  }
  response.writeHead(404);
  response.end();
});
server.listen({ port: 0, host: '127.0.0.1' }, () => process.stdout.write(`${server.address().port}\n`));
