// The HTTP front door: listening sockets owned by the kernel's main thread, with routes to service
// handlers. Runs in the kernel's main thread.
//
// The sockets never move. A hot swap changes only the code behind a handler, so keep-alive
// connections and requests in flight survive upgrades: a request that arrives while its service is
// paused waits (here, or in the service's port like any other call) and is answered by the new
// code.
//
// Lifecycle: idle -> listening -> closing -> closed. `stage()` opens the listeners a release adds
// (all or nothing, so a port that is taken refuses the release before anything changed) and
// `commit()` switches to its routes in one synchronous step, from the swap's switching turn.
// Every request has a deadline, and the limits below bound what a flood of clients can hold.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { TheseusError, deserializeError, errorMessage, theseusError } from '../common/errors.ts';
import type { WireHttpReply, WireHttpRequest } from '../common/http-codec.ts';
import { BATCH_HTTP, REPLY_OK, type BatchedCall, type BatchedResult, type BatchEncoding, type LogRecord } from '../common/protocol.ts';
import type { HttpConfig, HttpListenerConfig, HttpRoute, WebSocketRoute } from '../release/manifest.ts';
import type { FrontDoorStats } from '../common/status.ts';
import { HEALTH_PATH } from './health.ts';
import { checkTransition, type TransitionTable } from '../common/lifecycle.ts';
import { MAX_BATCH, MAX_BATCHES_IN_FLIGHT, addToBatch, dropAnswered, newBatch, type Batch, type Lane } from './http-batches.ts';
import { RouteTable, publicReason, statusForError } from './http-routes.ts';
import { WebSocketDoor } from './websockets.ts';

type FrontDoorState = 'idle' | 'listening' | 'closing' | 'closed';

/** idle and listening follow the listeners a release has; close() may come from either. */
const allowedTransitions: TransitionTable<FrontDoorState> = {
  idle: ['idle', 'listening', 'closing'],
  listening: ['listening', 'idle', 'closing'],
  closing: ['closed'],
  closed: [],
};

export interface FrontDoorOptions {
  /**
   * Sends requests to a service's handlers in one message (a BATCH_HTTP batch, see
   * http-codec.ts); resolves with each outcome in order. Kernel.callBatch does this.
   */
  callBatch(service: string, calls: BatchedCall[], encoding: Exclude<BatchEncoding, ''>): Promise<BatchedResult[]>;
  log(level: LogRecord['level'], message: string): void;
  /**
   * Whether a service runs its calls concurrently (a pool). Its requests then go out one by one
   * and at once: in a batch, the slowest call would hold back the replies of the others.
   */
  concurrent?(service: string): boolean;
  /** How long close() lets requests in flight finish before it ends their connections. */
  closeGraceMs?: number;
  /** DEFAULT_FRONT_DOOR_LIMITS, unless given. */
  limits?: Partial<FrontDoorLimits>;
  /** Answers HEALTH_PATH on every listener (KernelHealth.answer); without it, the path is routed like any other. */
  health?(method: string): { status: number; headers: string[]; body: string };
  /** Told each routed request's time, from its dispatch to its answer, in ms (for the metrics). */
  onAnswered?(ms: number): void;
}

interface Listener {
  key: string;
  config: HttpListenerConfig;
  server: Server;
  routes: RouteTable;
  /** Its WebSocket routes, by path. */
  websockets: Map<string, WebSocketRoute>;
  sockets: Set<Socket>;
  /**
   * Requests that reached a listener opened for a release whose code is not running yet: they
   * wait for commit() (which serves them) or abort() (503). null once the listener is live.
   */
  held: Array<[IncomingMessage, ServerResponse]> | null;
}

/** Content types whose bodies reach the handler as a string. */
const TEXT_BODY = /^(?:text\/|application\/(?:[\w.+-]*\+)?(?:json|xml|x-www-form-urlencoded|javascript)\b)/i;
/**
 * Limits that keep a flood of clients from exhausting the kernel (whose main thread also runs
 * the control socket): connections per listener, requests waiting for their services, bytes of
 * request bodies held, and how long a client may take to send its headers and its whole request.
 * Past them, new connections are refused, new requests get 503, and slow clients are cut off.
 */
export interface FrontDoorLimits {
  maxConnections: number;
  maxInFlight: number;
  maxBufferedBodyBytes: number;
  headersTimeoutMs: number;
  requestReceiveTimeoutMs: number;
}

export const DEFAULT_FRONT_DOOR_LIMITS: FrontDoorLimits = Object.freeze({
  maxConnections: 4096,
  maxInFlight: 16_384,
  maxBufferedBodyBytes: 256 * 1024 * 1024,
  headersTimeoutMs: 10_000,
  requestReceiveTimeoutMs: 30_000,
});

export class HttpFrontDoor {
  #state: FrontDoorState = 'idle';
  /** close()'s work, once it was asked for. */
  #closed: Promise<void> | null = null;
  #listeners = new Map<string, Listener>();
  #options: Required<Omit<FrontDoorOptions, 'limits' | 'health' | 'onAnswered'>> & Pick<FrontDoorOptions, 'health' | 'onAnswered'>;
  #limits: FrontDoorLimits;
  #maxBodyBytes = 0;
  #maxReplyBytes = Number.MAX_SAFE_INTEGER;
  #requestTimeoutMs = 30_000;
  /** Batches with requests not answered yet, queued or sent; one sweep timer checks deadlines. */
  #waiting = new Set<Batch>();
  /** Requests dispatched and not answered yet. */
  #inFlight = 0;
  /** Bytes of request bodies received and not answered yet. */
  #bufferedBytes = 0;
  #sweeper: NodeJS.Timeout | null = null;
  #requests = 0;
  /** Responses by status class: index 2 counts the 2xx, and so on. */
  #byClass = [0, 0, 0, 0, 0, 0];
  /** Per service: batches waiting to go out, and how many are out. */
  #lanes = new Map<string, Lane>();
  #flushScheduled = false;
  /** The listeners' WebSocket connections. */
  #websockets: WebSocketDoor;

  constructor(options: FrontDoorOptions) {
    const { limits, ...rest } = options;
    this.#options = { closeGraceMs: 5000, concurrent: () => false, ...rest };
    this.#limits = { ...DEFAULT_FRONT_DOOR_LIMITS, ...limits };
    this.#websockets = new WebSocketDoor({ callBatch: (service, calls, encoding) => this.#options.callBatch(service, calls, encoding), log: (level, message) => this.#options.log(level, message) });
  }

  /** A service's worker crashed and was restarted: its socket handlers learn which connections are open. */
  serviceRestarted(service: string): void {
    this.#websockets.restarted(service);
  }

  /** A service failed for good: its WebSocket connections are closed, and new ones refused. */
  serviceFailed(service: string): void {
    this.#websockets.failed(service);
  }

  get state(): FrontDoorState {
    return this.#state;
  }

  /** Connections open now, on every listener (for the metrics). */
  openConnections(): number {
    let open = 0;
    for (const listener of this.#listeners.values()) open += listener.sockets.size;
    return open;
  }

  stats(): FrontDoorStats {
    return {
      listeners: [...this.#listeners.values()].map((listener) => ({
        host: listener.config.host,
        configuredPort: listener.config.port,
        port: (listener.server.address() as AddressInfo | null)?.port ?? listener.config.port,
        routes: listener.routes.descriptions,
        ...(listener.websockets.size > 0 ? { websockets: [...listener.websockets.values()].map((route) => `${route.path} -> ${route.service}`) } : {}),
      })),
      requests: this.#requests,
      inFlight: this.#inFlight,
      responses: Object.fromEntries(this.#byClass.flatMap((count, index) => (count > 0 ? [[`${index}xx`, count]] : []))),
      websockets: this.#websockets.stats(),
    };
  }

  /** Makes the listeners match `config` (null: none) at once; see stage(). */
  async apply(config: HttpConfig | null): Promise<void> {
    (await this.stage(config)).commit();
  }

  /**
   * Prepares the listeners of `config` (null: none): sockets it adds are opened now, so a port
   * that is taken refuses the change before anything else happened (the ones just opened close
   * again). `commit()` then swaps the routes in one synchronous step and closes the listeners the
   * config dropped, gracefully; `abort()` closes what was opened and leaves the rest as it was.
   */
  async stage(config: HttpConfig | null): Promise<{ commit(): void; abort(): Promise<void> }> {
    if (this.#state === 'closing' || this.#state === 'closed') throw theseusError('E_KERNEL_STOPPED');
    const wanted = new Map((config?.listeners ?? []).map((listener) => [listenerKey(listener), listener]));
    const opened: Listener[] = [];
    try {
      for (const [key, listenerConfig] of wanted) {
        if (!this.#listeners.has(key)) opened.push(await this.#open(key, listenerConfig));
      }
    } catch (error) {
      await Promise.all(opened.map((listener) => this.#closeListener(listener, 0)));
      throw error;
    }
    let settled = false;
    return {
      commit: () => {
        if (settled) return;
        settled = true;
        if (config) {
          this.#maxBodyBytes = config.maxBodyBytes;
          this.#maxReplyBytes = config.maxReplyBytes;
          this.#requestTimeoutMs = config.requestTimeoutMs;
          this.#websockets.configure(config.websocket);
        }
        const removed: Listener[] = [];
        for (const [key, listener] of this.#listeners) {
          const next = wanted.get(key);
          if (!next) {
            removed.push(listener);
            this.#listeners.delete(key);
            continue;
          }
          listener.config = next;
          listener.routes = new RouteTable(next.routes);
          listener.websockets = webSocketRoutes(next);
        }
        for (const listener of opened) {
          this.#listeners.set(listener.key, listener);
          const held = listener.held ?? [];
          listener.held = null;
          for (const [request, response] of held) this.#onRequest(listener, request, response);
          this.#options.log('info', `HTTP front door listening on ${describe(listener)} (${listener.routes.descriptions.join('; ')})`);
        }
        this.#websockets.routed([...this.#listeners.values()].flatMap((listener) => [...listener.websockets.values()].map((route) => route.service)));
        this.#transition(this.#listeners.size > 0 ? 'listening' : 'idle');
        for (const listener of removed) void this.#closeListener(listener, this.#options.closeGraceMs);
      },
      abort: async () => {
        if (settled) return;
        settled = true;
        for (const listener of opened) {
          const held = listener.held ?? [];
          listener.held = null;
          // The release these requests came for did not go in: 503 (try again), never a wrong answer.
          for (const [request, response] of held) {
            response.setHeader('connection', 'close');
            response.setHeader('retry-after', '1');
            request.resume();
            this.#sendError(response, 503, 'E_SERVICE_DOWN', publicReason(503));
          }
        }
        await Promise.all(opened.map((listener) => this.#closeListener(listener, 0)));
      },
    };
  }

  /**
   * Stops accepting, lets requests in flight finish (within the grace period), then closes
   * everything. A second call waits for the first.
   */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      this.#transition('closing');
      // WebSocket connections first: their events reach the services, then they close with 1001;
      // the listeners' close would otherwise wait for them.
      await this.#websockets.close(this.#options.closeGraceMs);
      const listeners = [...this.#listeners.values()];
      this.#listeners.clear();
      await Promise.all(listeners.map((listener) => this.#closeListener(listener, this.#options.closeGraceMs)));
      if (this.#sweeper) clearInterval(this.#sweeper);
      this.#sweeper = null;
      this.#transition('closed');
    })();
    return this.#closed;
  }

  #transition(next: FrontDoorState): void {
    this.#state = checkTransition(allowedTransitions, 'the HTTP front door', this.#state, next);
  }

  // -------------------------------------------------------------------------------------------

  async #open(key: string, config: HttpListenerConfig): Promise<Listener> {
    // Node's limits for slow clients, tighter than its defaults: a client must send its headers,
    // then its whole request, in time, or its connection is closed.
    const { headersTimeoutMs, requestReceiveTimeoutMs, maxConnections } = this.#limits;
    const server = createServer({
      keepAlive: true,
      headersTimeout: headersTimeoutMs,
      requestTimeout: requestReceiveTimeoutMs,
      // Node checks those timeouts every 30 s by default, which would stretch them by as much.
      connectionsCheckingInterval: Math.max(100, Math.min(1000, headersTimeoutMs / 4)),
    });
    server.maxConnections = maxConnections;
    const listener: Listener = { key, config, server, routes: new RouteTable(config.routes), websockets: webSocketRoutes(config), sockets: new Set(), held: [] };
    server.on('request', (request: IncomingMessage, response: ServerResponse) => {
      if (listener.held) listener.held.push([request, response]);
      else this.#onRequest(listener, request, response);
    });
    server.on('upgrade', (request: IncomingMessage, socket: Socket, head: Buffer) => {
      // A listener whose release is not live yet has no code to hand a connection to: try again.
      if (listener.held) return this.#websockets.refuseNotLive(socket);
      const url = request.url ?? '/';
      const queryAt = url.indexOf('?');
      this.#websockets.upgrade(listener.websockets.get(queryAt === -1 ? url : url.slice(0, queryAt)) ?? null, request, socket, head);
    });
    server.on('connection', (socket: Socket) => {
      listener.sockets.add(socket);
      socket.once('close', () => listener.sockets.delete(socket));
    });
    // Malformed requests are left to Node's own handling: it answers 400 (or 431, 408) when no
    // response is pending on the connection, and closes it.
    await new Promise<void>((resolve, reject) => {
      server.once('error', (error) => reject(theseusError('E_HTTP_LISTEN_FAILED', `${config.host}:${config.port}`, errorMessage(error))));
      server.listen({ port: config.port, host: config.host }, () => resolve());
    });
    server.on('error', (error) => this.#options.log('error', `HTTP front door on ${describe(listener)}: ${errorMessage(error)}`));
    return listener;
  }

  async #closeListener(listener: Listener, graceMs: number): Promise<void> {
    // Named while bound: a closed server has no address, and its configured port may be 0.
    const where = describe(listener);
    const closed = new Promise<void>((resolve) => listener.server.close(() => resolve()));
    // Idle keep-alive connections would hold close() open; busy ones finish their response first.
    listener.server.closeIdleConnections();
    const grace = setTimeout(() => {
      for (const socket of listener.sockets) socket.destroy();
    }, graceMs);
    const idleSweep = setInterval(() => listener.server.closeIdleConnections(), 50);
    try {
      await closed;
    } finally {
      clearTimeout(grace);
      clearInterval(idleSweep);
    }
    this.#options.log('info', `HTTP front door stopped listening on ${where}`);
  }

  #onRequest(listener: Listener, request: IncomingMessage, response: ServerResponse): void {
    // The kernel's own health endpoint: no service involved, and a balancer's polls are not counted.
    if (this.#options.health && (request.url === HEALTH_PATH || request.url?.startsWith(`${HEALTH_PATH}?`))) {
      const { status, headers, body } = this.#options.health(request.method ?? 'GET');
      request.resume();
      response.writeHead(status, this.#state === 'closing' && !headers.includes('connection') ? [...headers, 'connection', 'close'] : headers);
      response.end(body);
      return;
    }
    this.#requests++;
    const url = request.url ?? '/';
    const queryAt = url.indexOf('?');
    const path = queryAt === -1 ? url : url.slice(0, queryAt);
    const method = request.method ?? 'GET';
    const match = listener.routes.match(method, path);
    if (match === null) return this.#refuse(request, response, 404, theseusError('E_HTTP_NO_ROUTE', method, path));
    if (Array.isArray(match)) {
      response.setHeader('allow', match.join(', '));
      return this.#refuse(request, response, 405, theseusError('E_HTTP_METHOD_NOT_ALLOWED', path, method, match.join(', ')));
    }
    if (this.#inFlight >= this.#limits.maxInFlight) {
      response.setHeader('retry-after', '1');
      return this.#refuse(request, response, 503, theseusError('E_HTTP_BUSY', this.#inFlight, 'requests waiting for their services'));
    }
    const query = queryAt === -1 ? '' : url.slice(queryAt + 1);
    // rawHeaders, not headers: Node builds the headers object only when asked, and the worker
    // builds the handler's copy, off this thread.
    const rawHeaders = request.rawHeaders;
    let contentLength: string | undefined;
    let chunked = false;
    let contentType: string | undefined;
    for (let i = 0; i < rawHeaders.length; i += 2) {
      const name = rawHeaders[i]!;
      if (name.length === 14 && name.toLowerCase() === 'content-length') contentLength = rawHeaders[i + 1];
      else if (name.length === 17 && name.toLowerCase() === 'transfer-encoding') chunked = true;
      else if (name.length === 12 && name.toLowerCase() === 'content-type') contentType = rawHeaders[i + 1];
    }
    // No declared body: dispatch now rather than wait for the (empty) stream to end.
    if (contentLength === undefined && !chunked) {
      request.resume();
      this.#dispatch(match, [method, path, query, rawHeaders, null], response, 0);
      return;
    }
    if (Number(contentLength ?? 0) > this.#maxBodyBytes) {
      return this.#refuse(request, response, 413, theseusError('E_HTTP_BODY_TOO_LARGE', this.#maxBodyBytes));
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let refused = false;
    const refuse = (status: number, error: TheseusError) => {
      refused = true;
      this.#bufferedBytes -= size;
      chunks.length = 0;
      this.#refuse(request, response, status, error);
    };
    request.on('data', (chunk: Buffer) => {
      if (refused) return;
      size += chunk.length;
      this.#bufferedBytes += chunk.length;
      if (size > this.#maxBodyBytes) return refuse(413, theseusError('E_HTTP_BODY_TOO_LARGE', this.#maxBodyBytes));
      // Bodies held for requests not answered yet, all together, are bounded too.
      if (this.#bufferedBytes > this.#limits.maxBufferedBodyBytes) {
        response.setHeader('retry-after', '1');
        return refuse(503, theseusError('E_HTTP_BUSY', this.#bufferedBytes, 'bytes of request bodies held'));
      }
      chunks.push(chunk);
    });
    request.on('end', () => {
      if (refused) return;
      const bytes = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
      const body = bytes.length === 0 ? null : contentType === undefined || TEXT_BODY.test(contentType) ? bytes.toString('utf8') : new Uint8Array(bytes);
      this.#dispatch(match, [method, path, query, rawHeaders, body], response, size);
    });
    // A client that goes away mid-body: nothing to answer, nothing held.
    request.on('error', () => {
      if (!refused) this.#bufferedBytes -= size;
      refused = true;
      response.destroy();
    });
  }

  /**
   * Queues the request for its service. What arrives for a service goes out in batches (one
   * message for many requests), at most MAX_BATCHES_IN_FLIGHT at a time; the rest gathers into
   * the next batch. A pool's requests go out one by one, at once.
   */
  #dispatch(route: HttpRoute, wire: WireHttpRequest, response: ServerResponse, bodyBytes: number): void {
    const deadline = Date.now() + this.#requestTimeoutMs;
    this.#inFlight++;
    this.#sweeper ??= setInterval(() => this.#sweep(), Math.min(1000, Math.max(10, this.#requestTimeoutMs / 4)));
    if (this.#options.concurrent(route.service)) {
      const single = newBatch();
      addToBatch(single, route, wire, response, deadline, bodyBytes);
      this.#waiting.add(single);
      this.#send(route.service, single);
      return;
    }
    let lane = this.#lanes.get(route.service);
    if (!lane) {
      lane = { service: route.service, queued: [], inFlight: 0 };
      this.#lanes.set(route.service, lane);
    }
    let batch = lane.queued[lane.queued.length - 1];
    if (!batch || batch.calls.length >= MAX_BATCH) {
      batch = newBatch();
      lane.queued.push(batch);
      this.#waiting.add(batch);
    }
    addToBatch(batch, route, wire, response, deadline, bodyBytes);
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      setImmediate(this.#flush);
    }
  }

  #flush = (): void => {
    this.#flushScheduled = false;
    for (const lane of this.#lanes.values()) this.#drain(lane);
  };

  /** Sends queued batches while the lane has room. Requests already answered (504) stay behind. */
  #drain(lane: Lane): void {
    while (lane.inFlight < MAX_BATCHES_IN_FLIGHT && lane.queued.length > 0) {
      const batch = lane.queued.shift()!;
      if (batch.pending < batch.responses.length) dropAnswered(batch);
      if (batch.pending === 0) {
        this.#waiting.delete(batch);
        continue;
      }
      lane.inFlight++;
      batch.lane = lane;
      this.#send(lane.service, batch);
    }
  }

  /** The batch no longer counts against its lane (answered, failed or timed out). */
  #freeSlot(batch: Batch): void {
    const lane = batch.lane;
    if (!lane) return;
    batch.lane = null;
    lane.inFlight--;
    this.#drain(lane);
  }

  #send(service: string, batch: Batch): void {
    let sent: Promise<BatchedResult[]>;
    try {
      sent = this.#options.callBatch(service, batch.calls, BATCH_HTTP);
    } catch (error) {
      sent = Promise.reject(error);
    }
    sent.then(
      (results) => this.#finish(batch, results, null),
      (error: unknown) => this.#finish(batch, null, error),
    );
  }

  /** The service answered the batch (or failed it): each request still waiting gets its reply. */
  #finish(batch: Batch, results: BatchedResult[] | null, error: unknown): void {
    this.#waiting.delete(batch);
    const { calls, routes, responses } = batch;
    for (let i = 0; i < responses.length; i++) {
      const response = this.#take(batch, i);
      if (!response) continue; // answered 504 already
      const result = results?.[i];
      if (result !== undefined && result[0] === REPLY_OK) this.#write(response, result[1] as WireHttpReply);
      else {
        const failure = results === null ? error : result === undefined ? theseusError('E_BAD_PHASE', 'a batch came back with fewer results than calls') : deserializeError(result[1]);
        this.#sendFailure(routes[i]!, calls[i]![1] as unknown as WireHttpRequest, response, failure);
      }
    }
    this.#freeSlot(batch);
  }

  /** Request `i` of the batch, taken off the waiting count; null when it was answered already. */
  #take(batch: Batch, i: number): ServerResponse | null {
    const response = batch.responses[i];
    if (!response) return null;
    batch.responses[i] = null;
    batch.pending--;
    this.#inFlight--;
    // Its deadline is its dispatch time plus the timeout, so no start time is kept per request.
    this.#options.onAnswered?.(Date.now() - batch.deadlines[i]! + this.#requestTimeoutMs);
    this.#bufferedBytes -= batch.bodyBytes[i]!;
    return response;
  }

  /** A reply the worker encoded: status, headers and body, written as they are. */
  #write(response: ServerResponse, [status, headers, body]: WireHttpReply): void {
    // The encoder puts the body's length last; the body arrived whole, but need not go out.
    const size = headers[headers.length - 2] === 'content-length' ? (headers[headers.length - 1] as number) : 0;
    if (size > this.#maxReplyBytes) {
      const error = theseusError('E_HTTP_REPLY_TOO_LARGE', `${response.req.method} ${response.req.url}`, size, this.#maxReplyBytes);
      this.#options.log('warn', error.message);
      this.#sendError(response, 502, error.code, publicReason(502));
      return;
    }
    if (this.#state === 'closing') headers.push('connection', 'close');
    try {
      response.writeHead(status, headers as string[]);
    } catch (error) {
      // Node checks header names and values as it writes them.
      for (const name of response.getHeaderNames()) response.removeHeader(name);
      const coded = theseusError('E_HTTP_BAD_REPLY', `the handler behind ${response.req.method} ${response.req.url}`, `an invalid header (${errorMessage(error)})`);
      this.#options.log('warn', coded.message);
      this.#sendError(response, 502, coded.code, publicReason(502));
      return;
    }
    this.#count(status);
    response.end(body);
  }

  #sendFailure(route: HttpRoute, wire: WireHttpRequest, response: ServerResponse, error: unknown): void {
    const code = error instanceof TheseusError ? error.code : 'E_INTERNAL';
    const status = statusForError(code);
    if (status >= 500) this.#options.log('warn', `${wire[0]} ${wire[1]} -> ${route.service}.${route.handler}: ${status}, ${errorMessage(error)}`);
    if (status === 503) response.setHeader('retry-after', '1');
    // A 400's message is the kernel's own (what of the request did not match the handler's
    // schema), never the handler's: the client needs it to fix the request.
    this.#sendError(response, status, code, status === 400 ? errorMessage(error) : publicReason(status));
  }

  /**
   * Answers 504 to every request past its deadline, wherever it waits. One sent before its
   * service answered may still run; one still queued here never goes out.
   */
  #sweep(): void {
    const now = Date.now();
    const freed: Batch[] = [];
    for (const batch of this.#waiting) {
      for (let i = 0; i < batch.deadlines.length; i++) {
        if (batch.deadlines[i]! > now || !batch.responses[i]) continue;
        const route = batch.routes[i]!;
        const response = this.#take(batch, i)!;
        const error = theseusError('E_HTTP_TIMEOUT', `${route.method} ${route.path} (${route.service}.${route.handler})`, this.#requestTimeoutMs);
        this.#options.log('warn', error.message);
        this.#sendError(response, 504, error.code, publicReason(504));
      }
      if (batch.pending === 0) {
        this.#waiting.delete(batch);
        if (batch.lane) freed.push(batch);
      }
    }
    // Only now: a freed slot sends the next batch, whose expired requests were answered above.
    for (const batch of freed) this.#freeSlot(batch);
    if (this.#waiting.size === 0 && this.#sweeper) {
      clearInterval(this.#sweeper);
      this.#sweeper = null;
    }
  }

  /**
   * A request refused before it reached a service: the client may see why. A body it was still
   * sending is not read: the connection closes after the answer.
   */
  #refuse(request: IncomingMessage, response: ServerResponse, status: number, error: TheseusError, unreadBody = status === 413 || status === 503): void {
    if (unreadBody) response.setHeader('connection', 'close');
    request.resume();
    this.#sendError(response, status, error.code, error.message);
  }

  #sendError(response: ServerResponse, status: number, code: string, message: string): void {
    if (response.headersSent) {
      response.destroy();
      return;
    }
    const payload = JSON.stringify({ error: code, message });
    this.#count(status);
    const head: Array<string | number> = ['content-type', 'application/json; charset=utf-8', 'content-length', Buffer.byteLength(payload)];
    if (this.#state === 'closing') head.push('connection', 'close');
    response.writeHead(status, head as string[]);
    response.end(payload);
  }

  #count(status: number): void {
    this.#byClass[(status / 100) | 0]!++;
  }
}

function webSocketRoutes(config: HttpListenerConfig): Map<string, WebSocketRoute> {
  return new Map((config.websockets ?? []).map((route) => [route.path, route]));
}

function listenerKey(listener: HttpListenerConfig): string {
  return `${listener.host}:${listener.port}`;
}

function describe(listener: Listener): string {
  const port = (listener.server.address() as AddressInfo | null)?.port ?? listener.config.port;
  return `http://${listener.config.host.includes(':') ? `[${listener.config.host}]` : listener.config.host}:${port}`;
}
