// The load of `npm run bench:ws`: many real `ws` clients in rooms, each saying numbered lines in a
// loop (a few on their way at once), and the check of every line: each member of the sender's room
// must get it exactly once, in the order sent. The same clients run against the kernel and against
// the plain `ws` chat (scripts/bench/plain-ws-chat.mjs), with or without PM2.
//
// Bookkeeping: a client counts its lines as sent only once `ws` has taken them on an open
// connection. Each receiver keeps, per sender, the last number it got and how many it got: a
// number at or below the last is a duplicate, one past the next is out of order (a gap), and at
// the end every line sent that a member never got is lost.

import WebSocket from 'ws';

export interface ChatLoadOptions {
  url: string;
  connections: number;
  roomSize: number;
  /** Lines a client has on their way at once. */
  window: number;
  /** Connect again after a close the load did not ask for (PM2's reloads end every socket). */
  reconnect: boolean;
  /** How long a client waits, after one of its lines came back, before it says the next (0: at once). */
  thinkMs?: number;
}

export interface ChatLoadResult {
  connections: number;
  /** Closes the load did not ask for. */
  disconnects: number;
  sent: number;
  delivered: number;
  lost: number;
  duplicated: number;
  outOfOrder: number;
  /** Deliveries per second while the load ran. */
  messagesPerSec: number;
  /** Upgrades refused, or sockets that failed to open. */
  connectFailures: number;
}

interface Client {
  index: number;
  room: number;
  ws: WebSocket | null;
  sent: number;
  /** Per sender's index: last number got, and how many. */
  last: Map<number, number>;
  got: Map<number, number>;
}

export class ChatLoad {
  #options: ChatLoadOptions;
  #clients: Client[] = [];
  #running = false;
  #stopping = false;
  #startedAt = 0;
  #stoppedAt = 0;
  #delivered = 0;
  /** Deliveries when the clients stopped saying lines, for the rate. */
  #deliveredAtStop = 0;
  #duplicated = 0;
  #outOfOrder = 0;
  #disconnects = 0;
  #connectFailures = 0;

  constructor(options: ChatLoadOptions) {
    this.#options = options;
    for (let index = 0; index < options.connections; index++) {
      this.#clients.push({ index, room: Math.floor(index / options.roomSize), ws: null, sent: 0, last: new Map(), got: new Map() });
    }
  }

  /** Opens every connection (in groups, so the listen backlog is not flooded) and waits for each welcome. */
  async connect(): Promise<void> {
    const GROUP = 100;
    for (let start = 0; start < this.#clients.length; start += GROUP) {
      await Promise.all(this.#clients.slice(start, start + GROUP).map((client) => this.#open(client)));
    }
  }

  /** Every client starts saying lines, `window` at a time. */
  start(): void {
    this.#running = true;
    this.#startedAt = performance.now();
    for (const client of this.#clients) for (let i = 0; i < this.#options.window; i++) this.#say(client);
  }

  /** Stops saying lines, waits (up to `drainMs`) for every line sent to reach its room, and closes every connection. */
  async stop(drainMs: number): Promise<ChatLoadResult> {
    this.#running = false;
    this.#stoppedAt = performance.now();
    this.#deliveredAtStop = this.#delivered;
    const deadline = Date.now() + drainMs;
    while (Date.now() < deadline && !this.#drained()) await new Promise((resolve) => setTimeout(resolve, 50));
    this.#stopping = true;
    await Promise.all(
      this.#clients.map(
        (client) =>
          new Promise<void>((resolve) => {
            const ws = client.ws;
            if (!ws || ws.readyState === WebSocket.CLOSED) return resolve();
            ws.once('close', () => resolve());
            ws.close();
          }),
      ),
    );
    return this.#result();
  }

  #open(client: Client): Promise<void> {
    const { url } = this.#options;
    return new Promise((resolve) => {
      const ws = new WebSocket(`${url}?room=r${client.room}&name=${client.index}`, { perMessageDeflate: false });
      client.ws = ws;
      let welcomed = false;
      ws.on('message', (data: Buffer, isBinary: boolean) => {
        if (isBinary) return;
        const frame = JSON.parse(data.toString()) as { type: string; name?: string; seq?: number };
        if (frame.type === 'welcome' && !welcomed) {
          welcomed = true;
          resolve();
          // After a reconnect, the lines on their way when the socket died will not come back.
          if (this.#running) for (let i = 0; i < this.#options.window; i++) this.#say(client);
          return;
        }
        if (frame.type === 'said') this.#heard(client, Number(frame.name), frame.seq!);
      });
      ws.on('error', () => {
        if (!welcomed) this.#connectFailures++;
      });
      ws.on('close', () => {
        if (!welcomed) resolve();
        if (this.#stopping) return;
        this.#disconnects++;
        if (this.#options.reconnect) setTimeout(() => void this.#open(client), 50);
      });
    });
  }

  #say(client: Client): void {
    const ws = client.ws;
    if (!this.#running || !ws || ws.readyState !== WebSocket.OPEN) return;
    ws.send(`{"type":"say","text":"x","seq":${++client.sent}}`);
  }

  #heard(receiver: Client, sender: number, seq: number): void {
    this.#delivered++;
    const last = receiver.last.get(sender) ?? 0;
    if (seq <= last) this.#duplicated++;
    else {
      if (seq !== last + 1) this.#outOfOrder++;
      receiver.last.set(sender, seq);
      receiver.got.set(sender, (receiver.got.get(sender) ?? 0) + 1);
    }
    // Its own line came back: the next one goes, at once or after the think time.
    if (sender !== receiver.index) return;
    const thinkMs = this.#options.thinkMs ?? 0;
    if (thinkMs === 0) this.#say(receiver);
    else setTimeout(() => this.#say(receiver), thinkMs);
  }

  #members(room: number): Client[] {
    const size = this.#options.roomSize;
    return this.#clients.slice(room * size, room * size + size);
  }

  #drained(): boolean {
    return this.#clients.every((receiver) => this.#members(receiver.room).every((sender) => (receiver.last.get(sender.index) ?? 0) >= sender.sent));
  }

  #result(): ChatLoadResult {
    let lost = 0;
    let sent = 0;
    for (const sender of this.#clients) {
      sent += sender.sent;
      for (const receiver of this.#members(sender.room)) lost += Math.max(0, sender.sent - (receiver.got.get(sender.index) ?? 0));
    }
    const seconds = (this.#stoppedAt - this.#startedAt) / 1000;
    return {
      connections: this.#clients.length,
      disconnects: this.#disconnects,
      sent,
      delivered: this.#delivered,
      lost,
      duplicated: this.#duplicated,
      outOfOrder: this.#outOfOrder,
      messagesPerSec: Math.round(this.#deliveredAtStop / Math.max(seconds, 0.001)),
      connectFailures: this.#connectFailures,
    };
  }
}
