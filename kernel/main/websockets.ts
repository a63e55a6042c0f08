// The WebSocket half of the front door: connections upgraded on the release's HTTP listeners,
// owned by the kernel's main thread, and their events carried to a stateful service's socket
// handlers. Runs in the kernel's main thread.
//
// The sockets never move, as for HTTP: a swap changes only the code behind the handlers. Every
// event of a service (open, message, close, restarted) goes out on the main thread's one channel
// to that service, in batches (BATCH_WS), so the service's port orders them. A swap moves that
// port, with whatever waits in it, to the new worker: events that arrive during the pause wait
// in it (or here, behind the batches in flight) and reach the new code in their order. The old
// worker's outcomes were posted to the same port before it handed the port over, so the frames
// it asked for are written here before any the new code asks for. Outcomes are carried out in the
// order they arrive, which is the order of the events.
//
// Framing, masking, fragments and the close handshake are the `ws` package's; this file only
// routes, limits and carries out what the handlers return.

import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { randomBytes } from 'node:crypto';
import { WebSocket, WebSocketServer } from 'ws';
import { deserializeError, errorMessage } from '../common/errors.ts';
import { BATCH_WS, REPLY_OK, type BatchedCall, type BatchedResult, type LogRecord } from '../common/protocol.ts';
import type { SocketEvent, WireSocketOpen, WireSocketOutcome } from '../common/socket-codec.ts';
import type { WebSocketStats } from '../common/status.ts';
import type { WebSocketLimits, WebSocketRoute } from '../release/manifest.ts';
import { MAX_BATCH, MAX_BATCHES_IN_FLIGHT } from './http-batches.ts';

/**
 * The defaults of the release's `http.websocket` limits. Bytes per connection are what bound the
 * kernel's memory: maxConnections x (maxBufferedBytes + maxPayloadBytes) at worst.
 */
export const DEFAULT_WEBSOCKET_LIMITS: Required<WebSocketLimits> = Object.freeze({
  maxPayloadBytes: 256 * 1024,
  maxBufferedBytes: 1024 * 1024,
  maxConnections: 10_000,
  pingIntervalMs: 30_000,
  maxWaitingEvents: 4096,
});

/**
 * Close codes the kernel itself sends (RFC 6455, section 7.4.1):
 *  - 1001 going away: the kernel stops;
 *  - 1009 message too big: a frame over maxPayloadBytes (sent by `ws`);
 *  - 1011 internal error: the service's handler threw or returned a bad result for this connection;
 *  - 1013 try again later: the client did not read, and the bytes waiting for it passed
 *    maxBufferedBytes. A temporary condition of this connection, not a broken rule of the
 *    protocol (1008), so a client that reconnects and reads is welcome.
 */
export const CLOSE_GOING_AWAY = 1001;
export const CLOSE_INTERNAL_ERROR = 1011;
export const CLOSE_TRY_AGAIN_LATER = 1013;

/** How long a connection closed for not reading has to take its close frame, before it is cut. */
const SLOW_CLOSE_GRACE_MS = 5000;

export interface WebSocketDoorOptions {
  callBatch(service: string, calls: BatchedCall[], encoding: typeof BATCH_WS): Promise<BatchedResult[]>;
  log(level: LogRecord['level'], message: string): void;
}

interface Connection {
  id: string;
  service: string;
  ws: WebSocket;
  /** The upgrade request, as `open` and `restarted` carry it. */
  request: WireSocketOpen;
  /** Seen alive since the last ping. */
  alive: boolean;
  /** Being closed: nothing more is sent to it. */
  closing: boolean;
}

/** One service's events not yet carried out: those waiting to go, and how many batches are out. */
interface SocketLane {
  service: string;
  /** [event, args] pairs, and the connection each came from (null for `restarted`). */
  events: BatchedCall[];
  from: Array<string | null>;
  inFlight: number;
  /** Its connections are not read (see #enqueue), until the service catches up. */
  paused: boolean;
}

export class WebSocketDoor {
  #options: WebSocketDoorOptions;
  #limits: Required<WebSocketLimits> = { ...DEFAULT_WEBSOCKET_LIMITS };
  #server: WebSocketServer;
  #connections = new Map<string, Connection>();
  #byService = new Map<string, Set<Connection>>();
  #lanes = new Map<string, SocketLane>();
  #flushScheduled = false;
  /** Settled when no event waits or is out, for close(). */
  #idleWaiters: Array<() => void> = [];
  #pinger: NodeJS.Timeout | null = null;
  #stopping = false;
  /** Services told (through `restarted`) that no connection of an earlier kernel is open. */
  #announced = new Set<string>();
  /** Services supervision gave up on (see failed()). */
  #failedServices = new Set<string>();
  /** Ids are unique across kernel runs too, so an id a checkpoint kept never names a new connection. */
  #idPrefix = randomBytes(4).toString('hex');
  #nextId = 0;
  #stats = { opened: 0, refused: 0, closedSlow: 0, closedFailed: 0, closedDead: 0, maxWaitingEvents: 0, inputPauses: 0 };

  constructor(options: WebSocketDoorOptions) {
    this.#options = options;
    this.#server = this.#newServer();
  }

  /** The release's limits (defaults for what it leaves out); connections open keep their frame limit. */
  configure(limits: WebSocketLimits | undefined): void {
    const next = { ...DEFAULT_WEBSOCKET_LIMITS, ...limits };
    const payloadChanged = next.maxPayloadBytes !== this.#limits.maxPayloadBytes;
    const pingChanged = next.pingIntervalMs !== this.#limits.pingIntervalMs;
    this.#limits = next;
    if (payloadChanged) this.#server = this.#newServer();
    if (pingChanged && this.#pinger) {
      clearInterval(this.#pinger);
      this.#pinger = null;
      this.#startPinger();
    }
  }

  stats(): WebSocketStats {
    let bufferedBytes = 0;
    for (const connection of this.#connections.values()) bufferedBytes += connection.ws.bufferedAmount;
    let waitingEvents = 0;
    for (const lane of this.#lanes.values()) waitingEvents += lane.events.length;
    return { open: this.#connections.size, ...this.#stats, bufferedBytes, waitingEvents, limits: { ...this.#limits } };
  }

  /**
   * An upgrade request on a listener: a connection for `route`'s service, or a refusal (an HTTP
   * answer, then the socket closes) when there is no route, no room, or the kernel stops.
   */
  upgrade(route: WebSocketRoute | null, request: IncomingMessage, socket: Duplex, head: Buffer): void {
    if (this.#stopping) return this.#refuse(socket, 503, 'E_KERNEL_STOPPED', 'the kernel is stopping');
    if (route === null) return this.#refuse(socket, 404, 'E_HTTP_NO_ROUTE', `no WebSocket route for ${request.url ?? '/'}`);
    if (this.#failedServices.has(route.service)) return this.#refuse(socket, 503, 'E_SERVICE_DOWN', `${route.service} has failed for good (past its restart limit); see kernel status and kernel logs`);
    if (this.#connections.size >= this.#limits.maxConnections) {
      return this.#refuse(socket, 503, 'E_HTTP_BUSY', `the kernel holds ${this.#connections.size} WebSocket connections, its limit (http.websocket.maxConnections)`);
    }
    this.#server.handleUpgrade(request, socket, head, (ws) => this.#adopt(route.service, request, ws));
  }

  /** An upgrade on a listener whose release is not serving yet (mid-swap): 503, try again. */
  refuseNotLive(socket: Duplex): void {
    this.#refuse(socket, 503, 'E_SERVICE_DOWN', 'the release this listener belongs to is not serving yet; try again');
  }

  /** Refuses an upgrade with an HTTP answer whose body says why, as the front door's errors do. */
  #refuse(socket: Duplex, status: number, code: string, message: string): void {
    this.#stats.refused++;
    const body = JSON.stringify({ error: code, message });
    const reason = status === 404 ? 'Not Found' : 'Service Unavailable';
    socket.end(`HTTP/1.1 ${status} ${reason}\r\nconnection: close\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${status === 503 ? 'retry-after: 1\r\n' : ''}\r\n${body}`);
  }

  /**
   * The services the release's WebSocket routes go to. Each one's `restarted` handler runs once,
   * when connections are first routed to it in this kernel, with none open: a state that came
   * from a checkpoint may hold the ids of connections that died with an earlier kernel.
   */
  routed(services: Iterable<string>): void {
    for (const service of services) {
      if (this.#announced.has(service)) continue;
      this.#announced.add(service);
      this.restarted(service);
    }
  }

  /**
   * Supervision gave up on `service`: nothing will handle its connections' events, so they are
   * closed (1011, reason E_SERVICE_DOWN) rather than left open and unanswered, and new upgrade
   * requests for it are refused (503) until a worker serves it again.
   */
  failed(service: string): void {
    this.#failedServices.add(service);
    for (const connection of this.#byService.get(service) ?? []) {
      if (connection.closing) continue;
      connection.closing = true;
      this.#stats.closedFailed++;
      connection.ws.close(CLOSE_INTERNAL_ERROR, 'E_SERVICE_DOWN');
    }
  }

  /** A worker of `service` crashed and its successor serves: it learns which connections are open. */
  restarted(service: string): void {
    this.#failedServices.delete(service);
    const open = [...(this.#byService.get(service) ?? [])].map((connection) => connection.request);
    this.#enqueue(service, null, 'restarted', [open]);
  }

  /**
   * For `kernel stop`: refuses new connections, lets the events already received reach their
   * services and their outcomes go out (within `graceMs`), then closes every connection with 1001
   * and waits (within `graceMs` again) for the close handshakes and the services' close handlers.
   */
  async close(graceMs: number): Promise<void> {
    this.#stopping = true;
    await this.#idle(graceMs);
    for (const connection of this.#connections.values()) {
      connection.closing = true;
      connection.ws.close(CLOSE_GOING_AWAY, 'the server is going away');
    }
    const deadline = Date.now() + graceMs;
    while (this.#connections.size > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    for (const connection of this.#connections.values()) connection.ws.terminate();
    await this.#idle(graceMs);
    if (this.#pinger) clearInterval(this.#pinger);
    this.#pinger = null;
  }

  // -------------------------------------------------------------------------------------------

  #newServer(): WebSocketServer {
    // No compression: it would cost the main thread per frame, and a compressed frame's size
    // says nothing about its memory once inflated.
    return new WebSocketServer({ noServer: true, clientTracking: false, perMessageDeflate: false, maxPayload: this.#limits.maxPayloadBytes });
  }

  #adopt(service: string, request: IncomingMessage, ws: WebSocket): void {
    const url = request.url ?? '/';
    const queryAt = url.indexOf('?');
    const id = `${this.#idPrefix}-${++this.#nextId}`;
    const connection: Connection = {
      id,
      service,
      ws,
      request: [id, queryAt === -1 ? url : url.slice(0, queryAt), queryAt === -1 ? '' : url.slice(queryAt + 1), request.rawHeaders],
      alive: true,
      closing: false,
    };
    this.#connections.set(id, connection);
    let members = this.#byService.get(service);
    if (!members) this.#byService.set(service, (members = new Set()));
    members.add(connection);
    this.#stats.opened++;
    this.#startPinger();
    this.#enqueue(service, id, 'open', connection.request);
    // A service that is behind reads no connection of its own, new ones included.
    if (this.#lanes.get(service)?.paused) ws.pause();
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      connection.alive = true;
      // A text frame goes as a string; a binary one as its bytes (copied when they cross).
      this.#enqueue(service, id, 'message', [id, isBinary ? data : data.toString('utf8')]);
    });
    ws.on('pong', () => {
      connection.alive = true;
    });
    // `ws` reports a protocol error (a frame over maxPayload: 1009, invalid UTF-8: 1007) here,
    // and closes the connection with the code itself; 'close' follows.
    ws.on('error', (error) => this.#options.log('info', `WebSocket ${id} (${service}): ${errorMessage(error)}`));
    ws.on('close', (code: number, reason: Buffer) => this.#gone(connection, code, reason.toString('utf8')));
  }

  #gone(connection: Connection, code: number, reason: string): void {
    if (!this.#connections.delete(connection.id)) return;
    this.#byService.get(connection.service)?.delete(connection);
    this.#enqueue(connection.service, connection.id, 'close', [connection.id, code, reason]);
  }

  #startPinger(): void {
    if (this.#pinger) return;
    this.#pinger = setInterval(() => {
      for (const connection of this.#connections.values()) {
        // Not read while its service catches up: its pongs wait unread too, and prove nothing.
        if (this.#lanes.get(connection.service)?.paused) continue;
        if (!connection.alive) {
          // No frame and no pong for a whole interval: the peer is gone without a word.
          this.#stats.closedDead++;
          connection.ws.terminate();
          continue;
        }
        connection.alive = false;
        connection.ws.ping();
      }
    }, this.#limits.pingIntervalMs);
    this.#pinger.unref();
  }

  // -------------------------------------------------------------------------------------------
  // Events to the services, outcomes back.

  #enqueue(service: string, from: string | null, event: SocketEvent, args: unknown[]): void {
    let lane = this.#lanes.get(service);
    if (!lane) this.#lanes.set(service, (lane = { service, events: [], from: [], inFlight: 0, paused: false }));
    lane.events.push([event, args]);
    lane.from.push(from);
    if (lane.events.length > this.#stats.maxWaitingEvents) this.#stats.maxWaitingEvents = lane.events.length;
    // Input backpressure: clients that send faster than their service handles would grow this
    // queue without bound. Past maxWaitingEvents the service's connections are not read (`ws`
    // pauses the sockets, so TCP pushes back on the clients) until it is down to a batch. Frames
    // already read in the same chunk still arrive: at most one socket read each.
    if (!lane.paused && lane.events.length > this.#limits.maxWaitingEvents) {
      lane.paused = true;
      this.#stats.inputPauses++;
      for (const connection of this.#byService.get(service) ?? []) connection.ws.pause();
    }
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      // Whatever arrives in this turn of the event loop goes out together.
      setImmediate(() => {
        this.#flushScheduled = false;
        for (const each of this.#lanes.values()) this.#flush(each);
      });
    }
  }

  #flush(lane: SocketLane): void {
    while (lane.events.length > 0 && lane.inFlight < MAX_BATCHES_IN_FLIGHT) {
      const events = lane.events.splice(0, MAX_BATCH);
      const from = lane.from.splice(0, MAX_BATCH);
      if (lane.paused && lane.events.length <= Math.min(MAX_BATCH, this.#limits.maxWaitingEvents / 2)) {
        lane.paused = false;
        for (const connection of this.#byService.get(lane.service) ?? []) {
          connection.alive = true;
          connection.ws.resume();
        }
      }
      lane.inFlight++;
      let sent: Promise<BatchedResult[]>;
      try {
        sent = this.#options.callBatch(lane.service, events, BATCH_WS);
      } catch (error) {
        sent = Promise.reject(error);
      }
      sent.then(
        (results) => this.#carryOut(lane, events, from, results, null),
        (error: unknown) => this.#carryOut(lane, events, from, null, error),
      );
    }
    if (lane.events.length === 0 && lane.inFlight === 0) this.#notifyIdle();
  }

  #carryOut(lane: SocketLane, events: BatchedCall[], from: Array<string | null>, results: BatchedResult[] | null, error: unknown): void {
    for (let i = 0; i < events.length; i++) {
      const result = results?.[i];
      if (result !== undefined && result[0] === REPLY_OK) this.#apply(lane.service, result[1] as WireSocketOutcome);
      else this.#failed(lane.service, events[i]![0] as SocketEvent, from[i]!, result === undefined ? error : deserializeError(result[1]));
    }
    lane.inFlight--;
    this.#flush(lane);
  }

  /** Writes what a handler asked to send, then closes what it asked to close, in its order. */
  #apply(service: string, [sends, closes]: WireSocketOutcome): void {
    for (const [to, data] of sends) {
      if (to === null) {
        for (const connection of this.#byService.get(service) ?? []) this.#send(connection, data);
        continue;
      }
      for (const id of to) {
        const connection = this.#connections.get(id);
        // An id that closed meanwhile, or another service's: dropped, as a send to a closed socket is.
        if (connection && connection.service === service) this.#send(connection, data);
      }
    }
    for (const [id, code, reason] of closes) {
      const connection = this.#connections.get(id);
      if (!connection || connection.service !== service || connection.closing) continue;
      connection.closing = true;
      connection.ws.close(code, reason);
    }
  }

  #send(connection: Connection, data: string | Uint8Array): void {
    if (connection.closing || connection.ws.readyState !== WebSocket.OPEN) return;
    connection.ws.send(data);
    if (connection.ws.bufferedAmount > this.#limits.maxBufferedBytes) this.#closeSlow(connection);
  }

  /**
   * The client does not read: nothing more is written to it, and it is closed with 1013. The
   * close frame waits behind what is buffered; a client that never reads it is cut after a grace.
   */
  #closeSlow(connection: Connection): void {
    connection.closing = true;
    this.#stats.closedSlow++;
    this.#options.log(
      'warn',
      `WebSocket ${connection.id} (${connection.service}) closed with ${CLOSE_TRY_AGAIN_LATER}: the client left more than ${this.#limits.maxBufferedBytes} bytes unread (http.websocket.maxBufferedBytes)`,
    );
    connection.ws.close(CLOSE_TRY_AGAIN_LATER, 'the client did not read its messages');
    setTimeout(() => connection.ws.terminate(), SLOW_CLOSE_GRACE_MS).unref();
  }

  /**
   * A handler threw (or returned something unusable) for this event: the connection it came from
   * is closed with 1011, and the service serves on. A crash is different: the connection stays
   * open, and the restarted worker's `restarted` handler learns it is there.
   */
  #failed(service: string, event: SocketEvent, from: string | null, error: unknown): void {
    const coded = error as { code?: string };
    this.#options.log('warn', `${service}.sockets.${event}()${from ? ` for WebSocket ${from}` : ''} failed: ${errorMessage(error)}`);
    if (coded.code === 'E_SERVICE_DOWN' || from === null || event === 'close') return;
    const connection = this.#connections.get(from);
    if (!connection || connection.closing) return;
    connection.closing = true;
    this.#stats.closedFailed++;
    connection.ws.close(CLOSE_INTERNAL_ERROR, coded.code ?? 'E_HANDLER_FAILED');
  }

  #notifyIdle(): void {
    for (const lane of this.#lanes.values()) if (lane.events.length > 0 || lane.inFlight > 0) return;
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const waiter of waiters) waiter();
  }

  /** Resolves once no event waits or is out, or after `timeoutMs`. */
  #idle(timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, timeoutMs);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.#idleWaiters.push(done);
      this.#notifyIdle();
    });
  }
}
