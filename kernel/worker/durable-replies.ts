// Reply durability, inside a service's worker: no reply leaves the worker before the state that
// produced it is on disk, so a kill -9 of the kernel (or a power cut) can never make the service
// hand out again what a caller was already told. The seed's sequence server needs exactly this:
// a number handed out twice is the worst failure an ID generator can have.
//
// Group commit, as databases do it: while a write of the state is under way, the worker keeps
// serving, and the replies it produces wait. When the write is done, the replies it covers go out,
// and the next write starts with the newest state, covering everything that finished meanwhile.
// One write (and its two fsyncs) serves many calls, so the cost per call falls as the load rises.
//
// The worker is the only writer of its checkpoint file while it serves: the kernel takes no
// checkpoint of a service in this mode, and an old and a new worker never both serve (a swap
// waits for the old one's last write before it hands the ports over).

import type { MessagePort } from 'node:worker_threads';
import { CheckpointWriter } from '../common/checkpoint-writer.ts';
import { errorMessage, serializeError, theseusError } from '../common/errors.ts';
import { injectFault } from '../common/faults.ts';
import { REPLY_ERROR, type ReplyFrame, type StateSnapshot } from '../common/protocol.ts';

/** How long to wait before each new attempt after a failed write; then the held calls fail. */
const RETRY_DELAYS_MS = [10, 100, 1000];
/**
 * Writes under way at once. Two let one write's bytes be synced while the previous one is renamed
 * and its folder synced; the renames stay in order (CheckpointWriter).
 */
const MAX_WRITES_IN_FLIGHT = 2;

interface HeldReply {
  /** null: the caller went away; the reply has nowhere to go, but it still waits its turn. */
  port: MessagePort | null;
  frame: ReplyFrame;
  /** The number of state changes this reply may reveal; it goes out once that many are on disk. */
  changes: number;
}

export interface DurableRepliesOptions {
  service: string;
  release: string;
  stateDir: string;
  /** The current state, encoded for the file. */
  snapshot(): StateSnapshot;
  /** Puts the state back to what was last written, after the held calls were failed. */
  restore(snapshot: StateSnapshot): void;
  /** Whether a handler is running: a state put back under it would be overwritten by its result. */
  handlerRunning(): boolean;
  /** Called when nothing is held and no write is under way (a drain may be waiting for it). */
  onSettled(): void;
  logError(message: string): void;
}

export class DurableReplies {
  #options: DurableRepliesOptions;
  #writer: CheckpointWriter;
  #held: HeldReply[] = [];
  #heldHead = 0;
  /** State changes made so far; how many the newest started write covers; how many are on disk. */
  #changes = 0;
  #started = 0;
  #durable = 0;
  #inFlight = 0;
  #scheduled = false;
  #retry: NodeJS.Timeout | null = null;
  #failedAttempts = 0;
  /** Set when the retries are spent: the held calls fail once no write is under way any more. */
  #givingUp: unknown = null;
  /** What the file holds now: put back if writes keep failing. */
  #lastWritten: StateSnapshot | null = null;
  /** Completed writes; each costs an fsync of the file and one of its folder. */
  writes = 0;

  constructor(options: DurableRepliesOptions) {
    this.#options = options;
    this.#writer = new CheckpointWriter(options.stateDir, options.service);
  }

  /** The state as adopted (from init, a snapshot or a checkpoint): what a failed write puts back. */
  adopted(snapshot: StateSnapshot): void {
    this.#lastWritten = snapshot;
  }

  /**
   * The worker starts serving: its adopted state is written before any reply leaves. The file may
   * hold an older one (the release before kept its state 'periodic', or this is a first init), and
   * no reply may rest on a state the disk does not have. Not earlier than this: until the switch a
   * swap can still roll back, and a write from a worker that never served could then land after
   * the old worker's own and put the file back in time.
   */
  serving(): void {
    this.changed();
  }

  /** The state changed: it must reach the disk before any later reply leaves. */
  changed(): void {
    this.#changes++;
    this.#schedule();
  }

  /** Sends `frame` now if everything it may reveal is on disk, else when it is. In order, always. */
  send(port: MessagePort | null, frame: ReplyFrame): void {
    if (this.#heldHead === this.#held.length && this.#durable >= this.#changes) {
      port?.postMessage(frame);
      return;
    }
    this.#held.push({ port, frame, changes: this.#changes });
    this.#schedule();
  }

  /** Nothing held, nothing being written, every change on disk. */
  get settled(): boolean {
    return this.#heldHead === this.#held.length && this.#durable >= this.#changes && this.#inFlight === 0;
  }

  get heldCount(): number {
    return this.#held.length - this.#heldHead;
  }

  #schedule(): void {
    if (this.#scheduled || this.#retry !== null || this.#givingUp !== null) return;
    this.#scheduled = true;
    // After the messages already delivered in this turn, so one write covers all of them.
    setImmediate(() => {
      this.#scheduled = false;
      this.#startWrite();
    });
  }

  /**
   * Starts a write of the current state when it has changes no write covers yet. At most two are
   * under way: while they are, the changes pile up for the next one (group commit).
   */
  #startWrite(): void {
    if (this.#inFlight >= MAX_WRITES_IN_FLIGHT || this.#changes <= this.#started || this.#retry !== null || this.#givingUp !== null) return;
    const upTo = this.#changes;
    this.#started = upTo;
    this.#inFlight++;
    let snapshot: StateSnapshot;
    try {
      snapshot = this.#options.snapshot();
      injectFault('state-write');
    } catch (error) {
      this.#inFlight--;
      this.#failed(error);
      return;
    }
    this.#writer.write(this.#options.release, snapshot).then(
      ({ folderSyncError }) => {
        // Renamed into place: written, whatever a power cut would do to the name.
        if (folderSyncError !== null) this.#options.logError(`the state was written, but its folder could not be synced (${errorMessage(folderSyncError)}): a power cut could lose the last write`);
        this.#inFlight--;
        this.#failedAttempts = 0;
        // Writes land in the order they started, so this one covers everything before it.
        this.#durable = Math.max(this.#durable, upTo);
        this.#lastWritten = snapshot;
        this.writes++;
        this.#release();
        this.#next();
      },
      (error: unknown) => {
        this.#inFlight--;
        this.#failed(error);
      },
    );
  }

  #next(): void {
    if (this.#givingUp !== null) {
      if (this.#inFlight === 0) this.#giveUp(this.#givingUp);
      return;
    }
    if (this.settled) this.#options.onSettled();
    else this.#schedule();
  }

  /** Sends the held replies whose changes are all on disk, oldest first. */
  #release(): void {
    while (this.#heldHead < this.#held.length && this.#held[this.#heldHead]!.changes <= this.#durable) {
      const { port, frame } = this.#held[this.#heldHead++]!;
      port?.postMessage(frame);
    }
    if (this.#heldHead === this.#held.length) {
      this.#held = [];
      this.#heldHead = 0;
    }
  }

  /**
   * A write failed (a full disk, a failing device). It is tried again a few times; then every held
   * call fails with E_STATE_NOT_DURABLE and the state goes back to what is on disk, so what callers
   * were told and what survives a crash stay the same thing.
   */
  #failed(error: unknown): void {
    // Its changes are not on disk: the next write must cover them again.
    this.#started = this.#durable;
    const delay = RETRY_DELAYS_MS[this.#failedAttempts++];
    if (delay !== undefined) {
      this.#options.logError(`the state could not be written (${errorMessage(error)}); trying again in ${delay} ms, ${this.heldCount} replies wait for it`);
      if (this.#retry === null) {
        this.#retry = setTimeout(() => {
          this.#retry = null;
          this.#schedule();
        }, delay);
        this.#retry.unref();
      }
      return;
    }
    // A write still under way could yet land with the changes about to be undone: wait for it.
    this.#givingUp = error;
    this.#next();
  }

  #giveUp(error: unknown): void {
    // A handler under way started from the state about to be put back; its result would undo the
    // undoing. Once it has finished, its reply is held with the others and fails with them.
    if (this.#options.handlerRunning()) {
      setTimeout(() => this.#giveUp(error), 1).unref();
      return;
    }
    this.#givingUp = null;
    this.#failedAttempts = 0;
    const reason = errorMessage(error);
    const failure = serializeError(theseusError('E_STATE_NOT_DURABLE', this.#options.service, reason));
    const held = this.#held.slice(this.#heldHead);
    this.#held = [];
    this.#heldHead = 0;
    this.#options.logError(`the state could not be written after ${RETRY_DELAYS_MS.length + 1} attempts (${reason}); ${held.length} calls fail and the state goes back to the last one written`);
    if (this.#durable < this.#changes && this.#lastWritten) this.#options.restore(this.#lastWritten);
    this.#durable = this.#changes;
    this.#started = this.#changes;
    for (const { port, frame } of held) port?.postMessage([frame[0], REPLY_ERROR, failure] satisfies ReplyFrame);
    this.#options.onSettled();
  }
}
