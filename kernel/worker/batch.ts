// A batch of calls in one message (FRAME_BATCH, as the HTTP front door sends what arrives in one
// turn): run one after another, exactly as if each had come in its own message, each on the
// state the previous one left; one reply carries every outcome, in order. Each call's arguments
// are checked as a single call's are: a refused one fails alone, and the next runs. Runs in a service's
// worker thread, for the service runtime.

import { serializeError, theseusError } from '../common/errors.ts';
import { decodeHttpRequest, encodeHttpReply, type WireHttpRequest } from '../common/http-codec.ts';
import { findNonPlainData } from '../common/plain-data.ts';
import { decodeSocketEvent, NO_SOCKET_OUTCOME, readSocketResult } from '../common/socket-codec.ts';
import { BATCH_HTTP, BATCH_WS, REPLY_ERROR, REPLY_OK, type BatchedCall, type BatchedResult, type ReplyFrame, type RequestFrame } from '../common/protocol.ts';
import { argsRefused, requestSubject, type ArgsChecks } from './arg-checks.ts';
import { readCallResult, replyProblem } from './handler-result.ts';
import type { ReplyPort } from './mailbox.ts';

type Handler = (ctx: unknown, ...args: unknown[]) => unknown;

/** What a batch needs of the runtime that runs it. */
export interface BatchHost {
  service: string;
  calls: ReadonlyMap<string, Handler>;
  casts: ReadonlyMap<string, Handler>;
  /** The service's socket handlers, by event (BATCH_WS batches). */
  sockets?: ReadonlyMap<string, Handler>;
  argsChecks: ArgsChecks;
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
  // A socket event goes to the handler of its name in `sockets`, never to a call of that name.
  const ws = frame[2] === BATCH_WS;
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
      const handler = ws ? host.sockets?.get(method) : host.calls.get(method);
      if (handler === undefined && ws) {
        // Only `message` is required: a connection nobody listens to is closed (1011).
        results[at] = method === 'message' ? [REPLY_ERROR, serializeError(theseusError('E_WS_NO_HANDLER', host.service, method))] : [REPLY_OK, NO_SOCKET_OUTCOME];
        continue;
      }
      if (handler === undefined) {
        results[at] = [REPLY_ERROR, serializeError(theseusError('E_UNKNOWN_METHOD', host.service, method, [...host.calls.keys(), ...host.casts.keys()].join(', ')))];
        continue;
      }
      // An HTTP handler's one argument is the request, built here from what the front door sent.
      let input: unknown[] | undefined;
      try {
        input = http ? [decodeHttpRequest(args as unknown as WireHttpRequest)] : ws ? decodeSocketEvent(method, args ?? []) : args;
      } catch (error) {
        results[at] = [REPLY_ERROR, serializeError(error, 'E_HANDLER_FAILED')];
        continue;
      }
      const check = ws ? undefined : host.argsChecks.get(method);
      if (check !== undefined && !check.accepts(input)) {
        results[at] = [REPLY_ERROR, serializeError(argsRefused(host.service, method, check, input, http ? requestSubject : undefined))];
        continue;
      }
      const ctx = host.context();
      let result: unknown;
      try {
        result = input === undefined ? handler(ctx) : handler(ctx, ...input);
      } catch (error) {
        results[at] = [REPLY_ERROR, serializeError(error, 'E_HANDLER_FAILED')];
        continue;
      }
      if (result !== null && typeof result === 'object' && typeof (result as Promise<unknown>).then === 'function') {
        if (!wentAsync) host.busy(true);
        wentAsync = true;
        (result as Promise<unknown>).then(
          (value) => {
            results[at] = ws ? settleSocket(host, method, input, value) : settle(host, method, value, http);
            runFrom();
          },
          (error: unknown) => {
            results[at] = [REPLY_ERROR, serializeError(error, 'E_HANDLER_FAILED')];
            runFrom();
          },
        );
        return;
      }
      results[at] = ws ? settleSocket(host, method, input, result) : settle(host, method, result, http);
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

/** One socket event's outcome: what to send and close, checked before its state is kept. */
function settleSocket(host: BatchHost, event: string, input: unknown[] | undefined, result: unknown): BatchedResult {
  const self = event === 'restarted' ? null : (input?.[0] as string);
  const read = readSocketResult(self, result);
  if ('problem' in read) return [REPLY_ERROR, serializeError(theseusError('E_WS_BAD_RESULT', host.service, event, read.problem))];
  const problem = replyProblem(read.outcome);
  if (problem !== null) return [REPLY_ERROR, serializeError(theseusError('E_WS_BAD_RESULT', host.service, event, problem))];
  if (read.state !== undefined && host.checkEveryChange) {
    const stateProblem = findNonPlainData(read.state);
    if (stateProblem !== null) return [REPLY_ERROR, serializeError(theseusError('E_STATE_NOT_CLONEABLE', host.service, `after sockets.${event}()`, stateProblem))];
  }
  host.served(read.state);
  return [REPLY_OK, read.outcome];
}
