// The messages a service's worker has taken from its callers' ports and not started yet, in the
// order it took them. Runs in a service's worker thread.

import type { MessagePort } from 'node:worker_threads';
import type { RequestFrame } from '../common/protocol.ts';

/**
 * Where a message came from: its caller's port, or null when that caller went away while the
 * message waited (it still runs, since its effect on the state counts; its reply goes nowhere).
 */
export type ReplyPort = MessagePort | null;

/** A FIFO of [port, frame] pairs with O(1) shift; arrays' shift() is O(n) once they grow. */
export class Mailbox {
  #items: Array<ReplyPort | RequestFrame> = [];
  #head = 0;
  get size(): number {
    return (this.#items.length - this.#head) / 2;
  }
  push(port: ReplyPort, frame: RequestFrame): void {
    this.#items.push(port, frame);
  }
  shift(): [ReplyPort, RequestFrame] {
    const port = this.#items[this.#head] as ReplyPort;
    const frame = this.#items[this.#head + 1] as RequestFrame;
    this.#head += 2;
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return [port, frame];
  }
  /** Empties the mailbox, oldest first. */
  takeAll(): Array<[ReplyPort, RequestFrame]> {
    const all: Array<[ReplyPort, RequestFrame]> = [];
    while (this.size > 0) all.push(this.shift());
    return all;
  }
}
