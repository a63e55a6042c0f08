// HTTP helpers for the front door tests: one request over a real socket, with the reply read whole.

import { Agent, request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import type { Socket } from 'node:net';
import type { HttpConfig, HttpRoute } from '../../kernel/release/manifest.ts';

/** A front door of one listener on a free port of 127.0.0.1, with these routes. */
export function oneListener(routes: HttpRoute[], limits: { maxBodyBytes: number; maxReplyBytes: number; requestTimeoutMs: number }): HttpConfig {
  return { listeners: [{ port: 0, host: '127.0.0.1', routes }], ...limits };
}

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

/** One number handed out over HTTP, and when it was asked for and received (performance.now()). */
export interface NumberReceipt {
  n: number;
  sentAt: number;
  receivedAt: number;
}

/**
 * `clients` keep-alive clients calling `GET /next` back to back on the sequence app's front door,
 * until stop(). Each records the numbers it received, in order; a response other than 200, or a
 * request that fails (a kernel killed under it), is counted, not thrown.
 */
export function startNextLoad(port: () => number, clients: number) {
  const received: NumberReceipt[][] = Array.from({ length: clients }, () => []);
  const statuses = new Map<number, number>();
  const errors: string[] = [];
  let stopping = false;
  const loops = received.map(async (record) => {
    let agent = new Agent({ keepAlive: true, maxSockets: 1 });
    while (!stopping) {
      const sentAt = performance.now();
      try {
        const result = await send(port(), 'GET', '/next', { agent });
        statuses.set(result.status, (statuses.get(result.status) ?? 0) + 1);
        if (result.status === 200) record.push({ n: result.json<{ number: number }>().number, sentAt, receivedAt: performance.now() });
        else await new Promise((resolve) => setTimeout(resolve, 5));
      } catch (error) {
        errors.push(String(error));
        // The connection died with its kernel: start a fresh one, after a breath.
        agent.destroy();
        agent = new Agent({ keepAlive: true, maxSockets: 1 });
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
    agent.destroy();
  });
  return {
    received,
    statuses,
    errors,
    answered: () => received.reduce((sum, record) => sum + record.length, 0),
    async stop(): Promise<void> {
      stopping = true;
      await Promise.all(loops);
    },
  };
}
