// The admin listener: Prometheus' /metrics and the live dashboard, read-only, behind a token.
// Runs in the kernel's main thread.
//
// It binds to 127.0.0.1 unless the release says otherwise (reach it with `ssh -L`). Every path
// needs the token kept in var/admin-token (mode 0600, like the control socket's cookie): as
// `Authorization: Bearer <token>` (what Prometheus sends), or as the cookie that opening the
// page with `?token=<token>` sets. Anything else gets 401 and no data. Nothing here changes the
// kernel: only GET and HEAD are answered.
//
//   GET /                    the page (with ?token=: sets the cookie, then sends the browser to /)
//   GET /assets/dashboard.js its script (uPlot inside)
//   GET /events              server-sent events: one DashboardTick a second
//   GET /metrics             Prometheus' text format

import { timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { errorMessage, theseusError } from '../../common/errors.ts';
import type { KernelMetrics } from '../metrics.ts';
import { dashboardScript } from '../../release/dashboard-bundle.ts';
import type { DashboardFeed } from './dashboard-feed.ts';
import { DASHBOARD_HTML } from './page-html.ts';

const COOKIE = 'theseus_admin';

export interface AdminServerOptions {
  host: string;
  port: number;
  token: string;
  metrics: KernelMetrics;
  feed: DashboardFeed;
  /** How often open pages get a tick. */
  tickMs?: number;
  log(level: 'info' | 'warn' | 'error', message: string): void;
}

export class AdminServer {
  #server: Server;
  #options: AdminServerOptions & { tickMs: number };
  #token: Buffer;
  #sockets = new Set<Socket>();
  /** Open event streams; the ticker runs while there is one. */
  #streams = new Set<ServerResponse>();
  #ticker: NodeJS.Timeout | null = null;
  #ticking = false;

  private constructor(options: AdminServerOptions) {
    this.#options = { tickMs: 1000, ...options };
    this.#token = Buffer.from(options.token);
    this.#server = createServer((request, response) => void this.#answer(request, response));
    this.#server.on('connection', (socket: Socket) => {
      this.#sockets.add(socket);
      socket.once('close', () => this.#sockets.delete(socket));
    });
  }

  static async listen(options: AdminServerOptions): Promise<AdminServer> {
    const admin = new AdminServer(options);
    await new Promise<void>((resolve, reject) => {
      admin.#server.once('error', (error) => reject(theseusError('E_ADMIN_LISTEN_FAILED', `${options.host}:${options.port}`, errorMessage(error))));
      admin.#server.listen({ host: options.host, port: options.port }, () => resolve());
    });
    admin.#server.on('error', (error) => options.log('error', `admin listener: ${errorMessage(error)}`));
    return admin;
  }

  /** Where it listens, with the port actually bound. */
  get address(): { host: string; port: number } {
    return { host: this.#options.host, port: (this.#server.address() as AddressInfo).port };
  }

  async close(): Promise<void> {
    if (this.#ticker) clearInterval(this.#ticker);
    this.#ticker = null;
    for (const stream of this.#streams) stream.end();
    this.#streams.clear();
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    // Event streams never end by themselves, and an idle keep-alive would hold close() open.
    for (const socket of this.#sockets) socket.destroy();
    await closed;
  }

  async #answer(request: IncomingMessage, response: ServerResponse): Promise<void> {
    request.resume();
    const url = new URL(request.url ?? '/', 'http://admin');
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' }).end('read-only: only GET and HEAD\n');
      return;
    }
    // Opening the page with the token in the query: keep it as a cookie, and take it out of the
    // address bar (and so out of the browser's history).
    if (url.pathname === '/' && url.searchParams.has('token')) {
      if (!this.#accepts(url.searchParams.get('token'))) return this.#refuse(response);
      response
        .writeHead(303, { location: '/', 'set-cookie': `${COOKIE}=${this.#options.token}; HttpOnly; SameSite=Strict; Path=/`, 'cache-control': 'no-store' })
        .end();
      return;
    }
    if (!this.#accepts(bearer(request) ?? cookie(request, COOKIE))) return this.#refuse(response);
    try {
      switch (url.pathname) {
        case '/metrics': {
          const { contentType, body } = await this.#options.metrics.exposition();
          response.writeHead(200, { 'content-type': contentType, 'cache-control': 'no-store' }).end(body);
          return;
        }
        case '/':
          response.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store', ...SECURITY_HEADERS }).end(DASHBOARD_HTML);
          return;
        case '/assets/dashboard.js':
          response.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8', 'cache-control': 'no-store' }).end(await dashboardScript());
          return;
        case '/events':
          // A HEAD has no body to stream: it would hold a stream open that sends nothing.
          if (request.method === 'HEAD') response.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store' }).end();
          else this.#openStream(response);
          return;
        default:
          response.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found: the admin listener serves /, /events and /metrics\n');
      }
    } catch (error) {
      this.#options.log('error', `admin listener: ${url.pathname}: ${errorMessage(error)}`);
      if (!response.headersSent) response.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
      response.end(`${errorMessage(error)}\n`);
    }
  }

  #accepts(given: string | null | undefined): boolean {
    if (!given) return false;
    const candidate = Buffer.from(given);
    return candidate.length === this.#token.length && timingSafeEqual(candidate, this.#token);
  }

  #refuse(response: ServerResponse): void {
    response
      .writeHead(401, { 'www-authenticate': 'Bearer realm="theseus"', 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' })
      .end("401: this needs the admin token. 'kernel dashboard' prints it, and the page's address with it.\n");
  }

  #openStream(response: ServerResponse): void {
    response.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
    response.write('retry: 2000\n\n');
    this.#streams.add(response);
    response.once('close', () => {
      this.#streams.delete(response);
      if (this.#streams.size === 0 && this.#ticker) {
        clearInterval(this.#ticker);
        this.#ticker = null;
      }
    });
    this.#ticker ??= setInterval(() => void this.#tick(), this.#options.tickMs);
    void this.#tick();
  }

  async #tick(): Promise<void> {
    // A slow collection (a worker busy in a long handler) must not pile ticks up behind it.
    if (this.#ticking) return;
    this.#ticking = true;
    try {
      const frame = `data: ${JSON.stringify(await this.#options.feed.tick())}\n\n`;
      for (const stream of this.#streams) stream.write(frame);
    } catch (error) {
      this.#options.log('warn', `dashboard tick failed: ${errorMessage(error)}`);
    } finally {
      this.#ticking = false;
    }
  }
}

/** The page runs only its own script and talks only to this listener. */
const SECURITY_HEADERS = {
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; img-src 'self' data:",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
};

function bearer(request: IncomingMessage): string | null {
  const header = request.headers.authorization;
  const match = header ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
  return match ? match[1]! : null;
}

function cookie(request: IncomingMessage, name: string): string | null {
  for (const part of (request.headers.cookie ?? '').split(';')) {
    const at = part.indexOf('=');
    if (at !== -1 && part.slice(0, at).trim() === name) return part.slice(at + 1).trim();
  }
  return null;
}
