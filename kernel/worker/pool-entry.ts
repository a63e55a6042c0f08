// Runs inside each thread of a pooled service's piscina pool: piscina's task module. It loads the
// service's bundle once per thread, and its default export runs one task: a call or cast of the
// service, with no state, or the `warm` probe the kernel sends before a pool may serve.
//
// A pooled service is stateless: every handler gets `state: undefined` and must not return one,
// because the next call may run on another thread. Errors come back as the same coded errors the
// stateful runtime gives (service-runtime.ts), so a caller cannot tell a pool from a worker.
//
// This file is bundled (with kernel/worker and kernel/common) into its own runtime file, which
// piscina's worker imports; a deployed release ships it prebuilt as lib/pool-worker.mjs.

import { threadId, workerData, type MessagePort } from 'node:worker_threads';
import { methodProxy } from '../common/client.ts';
import { deserializeError, serializeError, theseusError, type SerializedError } from '../common/errors.ts';
import { explainCloneFailure } from '../common/plain-data.ts';
import {
  FRAME_CALL,
  FRAME_CAST,
  REPLY_OK,
  type GatewayFrame,
  type LogRecord,
  type PoolBootData,
  type PoolTask,
  type PoolTaskResult,
  type PoolWarmReply,
  type ReplyFrame,
  type ServiceDescriptor,
} from '../common/protocol.ts';
import type { BaseContext, ServiceDefinition } from '../service.ts';
import { argsChecksOf, argsRefused, requestSubject, type ArgsChecks } from './arg-checks.ts';
import { loadServiceDefinition } from './load-definition.ts';
import { createServiceLogger, describeDefinition } from './definition.ts';
import { readCallResult, readCastResult } from './handler-result.ts';

type Handler = (ctx: unknown, ...args: unknown[]) => unknown;

interface LoadedService {
  definition: ServiceDefinition;
  descriptor: ServiceDescriptor;
  calls: Map<string, Handler>;
  casts: Map<string, Handler>;
  argsChecks: ArgsChecks;
}

const boot = workerData as PoolBootData;
const config = Object.freeze({ ...boot.config });

// Started at import and never thrown from it: a thread that crashed at import would be replaced by
// piscina with a new one, which would crash the same way, over and over. Every task reports the
// failure instead, and the kernel's warm-up turns it into a refused swap.
const loading: Promise<LoadedService | { failed: SerializedError }> = loadServiceDefinition(boot.moduleUrl, boot.protocol).then(
  (definition) => ({
    definition,
    descriptor: describeDefinition(definition),
    calls: new Map(Object.entries(definition.calls ?? {}) as Array<[string, Handler]>),
    casts: new Map(Object.entries(definition.casts ?? {}) as Array<[string, Handler]>),
    argsChecks: argsChecksOf(definition),
  }),
  (error: unknown) => ({ failed: serializeError(error, 'E_BOOT_FAILED') }),
);

/**
 * This thread's channel to the kernel's main thread, which makes its calls to the stateful
 * services the pooled service uses (through the kernel's own clients, so their swaps and restarts
 * are the kernel's to handle), and the calls still waiting for their answer.
 */
let gateway: { port: MessagePort; casts: Record<string, string[]>; pending: Map<number, { resolve(value: unknown): void; reject(error: unknown): void }>; nextId: number } | null = null;

function openGateway(port: MessagePort, casts: Record<string, string[]>): void {
  // A thread warmed twice keeps the newer channel; nothing was sent on the older one yet.
  gateway?.port.close();
  const opened = { port, casts, pending: new Map<number, { resolve(value: unknown): void; reject(error: unknown): void }>(), nextId: 1 };
  port.on('message', ([id, status, value]: ReplyFrame) => {
    const waiting = opened.pending.get(id);
    if (!waiting) return;
    opened.pending.delete(id);
    if (status === REPLY_OK) waiting.resolve(value);
    else waiting.reject(deserializeError(value));
  });
  // piscina keeps the thread alive; this channel must not keep it from exiting when the pool closes.
  port.unref();
  gateway = opened;
}

/** A client of the stateful service `other`, over the gateway: the same calls and casts as a worker's. */
function gatewayClient(uses: readonly string[], other: string): object {
  if (!uses.includes(other)) throw theseusError('E_NOT_IN_USES', boot.service, other);
  const open = gateway;
  if (!open) throw theseusError('E_POOLED_NO_CLIENT', boot.service, other);
  const send = (frame: GatewayFrame) => open.port.postMessage(frame);
  return methodProxy(
    (name) => open.casts[other]?.includes(name) ?? false,
    (name, args) =>
      new Promise((resolve, reject) => {
        const id = open.nextId++;
        open.pending.set(id, { resolve, reject });
        try {
          send([other, [FRAME_CALL, id, name, args]]);
        } catch (error) {
          open.pending.delete(id);
          reject(theseusError('E_ARGS_NOT_CLONEABLE', other, name, explainCloneFailure(args, 'args', error)));
        }
      }),
    (name, args) => send([other, [FRAME_CAST, 0, name, args]]),
  );
}

/** Log lines written after their task answered (a handler's stray timer); sent with the next answer. */
let lateLogs: LogRecord[] = [];

export default async function runPoolTask(task: PoolTask): Promise<PoolTaskResult> {
  const loaded = await loading;
  if ('failed' in loaded) return { ok: false, error: loaded.failed };
  if (task.op === 'warm') {
    if (task.gateway) openGateway(task.gateway, task.casts ?? {});
    const reply: PoolWarmReply = { descriptor: loaded.descriptor, threadId };
    return { ok: true, reply };
  }
  if (task.op === 'check-args') {
    const check = loaded.argsChecks.get(task.method);
    if (check === undefined || check.accepts(task.args)) return { ok: true, reply: undefined };
    return { ok: false, error: serializeError(argsRefused(boot.service, task.method, check, task.args)) };
  }
  let open = true;
  const logs: LogRecord[] = lateLogs;
  lateLogs = [];
  const log = createServiceLogger(boot.service, boot.release, (record) => (open ? logs : lateLogs).push(record));
  const result = await runHandler(loaded, task, log);
  open = false;
  return logs.length > 0 ? { ...result, logs } : result;
}

async function runHandler(loaded: LoadedService, task: Extract<PoolTask, { op: 'call' | 'cast' }>, log: BaseContext['log']): Promise<PoolTaskResult> {
  const { method, args } = task;
  const handler = task.op === 'call' ? loaded.calls.get(method) : loaded.casts.get(method);
  if (handler === undefined) {
    const known = [...loaded.calls.keys(), ...loaded.casts.keys()].join(', ');
    return failed(task, log, theseusError('E_UNKNOWN_METHOD', boot.service, method, known));
  }
  const check = loaded.argsChecks.get(method);
  if (check !== undefined && !check.accepts(args)) return failed(task, log, argsRefused(boot.service, method, check, args, task.http ? requestSubject : undefined));
  const ctx = {
    state: undefined,
    service: boot.service,
    release: boot.release,
    log,
    staticDir: boot.staticDir,
    config,
    client(other: string) {
      return gatewayClient(loaded.descriptor.uses, other);
    },
  };
  let result: unknown;
  try {
    result = await (args === undefined ? handler(ctx) : handler(ctx, ...args));
  } catch (error) {
    return failed(task, log, error);
  }
  const read = task.op === 'cast' ? readCastResult(boot.service, method, result) : readCallResult(boot.service, method, result);
  if ('error' in read) return failed(task, log, read.error);
  // A pool keeps no state: a handler that returns one is told so, not silently ignored.
  if (read.state !== undefined) return failed(task, log, theseusError('E_POOLED_STATE_RETURNED', boot.service, method));
  if (!('reply' in read)) return { ok: true, reply: undefined };
  const { reply } = read;
  // piscina posts the answer itself, and a reply it cannot clone would crash the thread: find out
  // here, where it can still be answered as the stateful runtime answers it.
  if (reply !== null && (typeof reply === 'object' || typeof reply === 'function' || typeof reply === 'symbol')) {
    try {
      structuredClone(reply);
    } catch (error) {
      return failed(task, log, theseusError('E_REPLY_NOT_CLONEABLE', boot.service, method, explainCloneFailure(reply, 'reply', error)));
    }
  }
  return { ok: true, reply };
}

/** A call's failure goes back to its caller; a cast has nobody to answer, so it is logged. */
function failed(task: Extract<PoolTask, { op: 'call' | 'cast' }>, log: BaseContext['log'], error: unknown): PoolTaskResult {
  const serialized = serializeError(error, 'E_HANDLER_FAILED');
  if (task.op === 'call') return { ok: false, error: serialized };
  log.error(`cast ${task.method}() failed: ${serialized.message}`, { code: serialized.code });
  return { ok: true, reply: undefined };
}
