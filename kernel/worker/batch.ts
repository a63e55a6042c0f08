// A batch of calls in one message (FRAME_BATCH, as the HTTP front door sends what arrives in one
// turn): run one after another, exactly as if each had come in its own message, each on the
// state the previous one left; one reply carries every outcome, in order. Runs in a service's
// worker thread, for the service runtime.

import { serializeError, theseusError } from '../common/errors.ts';
import { decodeHttpRequest, encodeHttpReply, type WireHttpRequest } from '../common/http-codec.ts';
import { findNonPlainData } from '../common/plain-data.ts';
import { BATCH_HTTP, REPLY_ERROR, REPLY_OK, type BatchedCall, type BatchedResult, type ReplyFrame, type RequestFrame } from '../common/protocol.ts';
import { readCallResult, replyProblem } from './handler-result.ts';
import type { ReplyPort } from './mailbox.ts';

type Handler = (ctx: unknown, ...args: unknown[]) => unknown;

/** What a batch needs of the runtime that runs it. */
export interface BatchHost {
  service: string;
  calls: ReadonlyMap<string, Handler>;
  casts: ReadonlyMap<string, Handler>;
  /** The handlers' context, with the current state in it. */
  context(): unknown;
  checkEveryChange: boolean;
  /** A call succeeded: count it, and keep its state (undefined: unchanged). */
  served(state: unknown): void;
  reply(port: ReplyPort, frame: ReplyFrame): void;
  /** The batch awaits a handler (true) or is done with the wait (false). */
  busy(busy: boolean): void;
}

export function runBatch(host: BatchHost, port: ReplyPort, frame: RequestFrame, taken: Int32Array | undefined): void {
  const id = frame[1];
  const calls = (frame[3] ?? []) as BatchedCall[];
  const http = frame[2] === BATCH_HTTP;
  const results = new Array<BatchedResult>(calls.length);
  // The caller learns how far the batch got: if this thread dies, the calls that had started
  // fail (they may or may not have run) and the others are sent again to the restarted worker.
  if (taken) {
    Atomics.store(taken, 1, 0);
    Atomics.store(taken, 0, id);
  }
  let index = 0;
  let wentAsync = false;
  const finish = () => {
    host.reply(port, [id, REPLY_OK, results]);
    if (wentAsync) host.busy(false);
  };
  const runFrom = (): void => {
    while (index < calls.length) {
      const [method, args] = calls[index]!;
      const at = index++;
      if (taken) Atomics.store(taken, 1, index);
      const handler = host.calls.get(method);
      if (handler === undefined) {
        results[at] = [REPLY_ERROR, serializeError(theseusError('E_UNKNOWN_METHOD', host.service, method, [...host.calls.keys(), ...host.casts.keys()].join(', ')))];
        continue;
      }
      const ctx = host.context();
      let result: unknown;
      try {
        if (http) result = handler(ctx, decodeHttpRequest(args as unknown as WireHttpRequest));
        else result = args === undefined ? handler(ctx) : handler(ctx, ...args);
      } catch (error) {
        results[at] = [REPLY_ERROR, serializeError(error, 'E_HANDLER_FAILED')];
        continue;
      }
      if (result !== null && typeof result === 'object' && typeof (result as Promise<unknown>).then === 'function') {
        if (!wentAsync) host.busy(true);
        wentAsync = true;
        (result as Promise<unknown>).then(
          (value) => {
            results[at] = settle(host, method, value, http);
            runFrom();
          },
          (error: unknown) => {
            results[at] = [REPLY_ERROR, serializeError(error, 'E_HANDLER_FAILED')];
            runFrom();
          },
        );
        return;
      }
      results[at] = settle(host, method, result, http);
    }
    finish();
  };
  runFrom();
}

/**
 * One batched call's outcome. Its reply is checked before its state is kept: the batch is posted
 * as a whole at the end, too late to leave the state as it was for one reply that cannot be cloned.
 */
function settle(host: BatchHost, method: string, result: unknown, http: boolean): BatchedResult {
  const call = readCallResult(host.service, method, result);
  if ('error' in call) return [REPLY_ERROR, serializeError(call.error)];
  let { reply } = call;
  const { state } = call;
  if (http) {
    // Encoded here, off the front door's thread; what comes out is strings and bytes.
    const encoded = encodeHttpReply(reply);
    if ('problem' in encoded) return [REPLY_ERROR, serializeError(theseusError('E_HTTP_BAD_REPLY', `${host.service}.${method}()`, encoded.problem))];
    reply = encoded;
  } else {
    const problem = replyProblem(reply);
    if (problem !== null) return [REPLY_ERROR, serializeError(theseusError('E_REPLY_NOT_CLONEABLE', host.service, method, problem))];
  }
  if (state !== undefined && host.checkEveryChange) {
    const problem = findNonPlainData(state);
    if (problem !== null) return [REPLY_ERROR, serializeError(theseusError('E_STATE_NOT_CLONEABLE', host.service, `after ${method}()`, problem))];
  }
  host.served(state);
  return [REPLY_OK, reply];
}
