// HTTP helpers for the front door tests: one request over a real socket, with the reply read whole.

import { Agent, request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import type { Socket } from 'node:net';

export interface HttpResult {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  /** The body parsed as JSON (throws if it is not). */
  json<T = Record<string, unknown>>(): T;
}

/**
 * A keep-alive agent that counts the TCP connections it opens. Counting the agent's pools at the end
 * proves nothing: it never holds more than maxSockets, however many connections came and went.
 */
export class CountingAgent extends Agent {
  connections = 0;
  override createConnection(...args: Parameters<Agent['createConnection']>): Socket {
    this.connections++;
    return super.createConnection(...args) as Socket;
  }
}

export function send(
  port: number,
  method: string,
  path: string,
  options: { headers?: Record<string, string | number>; body?: string | Buffer; agent?: Agent } = {},
): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, method, path, headers: options.headers, agent: options.agent ?? false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const body = Buffer.concat(chunks);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, json: <T>() => JSON.parse(body.toString('utf8')) as T });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    if (options.body !== undefined) req.write(options.body);
    req.end();
  });
}
