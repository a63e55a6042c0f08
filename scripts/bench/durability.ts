// Durability and overload, in one run:
//  1. calls/s of the sequence service under 200 closed-loop callers in durability 'reply' (each
//     reply waits for its state to be on disk; group commit) against the same service with no
//     durability at all (no checkpoint timer, no checkpoint every N changes), in alternating
//     rounds; and how many state writes (each an fsync of the file and one of its folder) 'reply'
//     made per second.
//  2. the swap pause of a service whose calls await about 1 ms, with 200 callers keeping a
//     backlog of about 200 queued calls, against the same 200 callers calling a handler that does
//     not wait (so nothing piles up) and against no load at all. The backlog moves to the new
//     worker instead of being run first, so the pause should not grow with it. The callers run on
//     the kernel's main thread, which also carries the swap's control messages: that load, not
//     the backlog, is what separates the loaded pauses from the idle one.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Kernel, type LogRecord } from '../../kernel/index.ts';

const sequenceEntry = fileURLToPath(new URL('../../services/sequence/0.1.0/sequence.ts', import.meta.url));
const backlogEntry = (version: 'v1' | 'v2') => fileURLToPath(new URL(`./services/backlog-${version}.ts`, import.meta.url));

export interface DurabilityResult {
  callers: number;
  rounds: number;
  replyCallsPerSec: number;
  noneCallsPerSec: number;
  /** reply / none. */
  ratio: number;
  /** State writes per second in 'reply', and the fsyncs they cost (two each). */
  writesPerSec: number;
  fsyncsPerSec: number;
  /** Calls each write covered, on average (group commit). */
  callsPerWrite: number;
  failedCalls: number;
}

export interface BacklogSwapResult {
  callers: number;
  swaps: number;
  /** Median pause with about `callers` calls queued; with the same callers and none queued; with no load. */
  pauseMsBacklog: number;
  pauseMsNoBacklog: number;
  pauseMsIdle: number;
  /** backlog / no backlog, under the same callers. */
  ratio: number;
  /** Median of the messages each swap carried over to the new worker. */
  carried: number;
  /** Median of the part of the pause spent finishing the running handler. */
  drainMs: number;
  failedCalls: number;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length === 0 ? Number.NaN : sorted[Math.floor((sorted.length - 1) / 2)]!;
}

type Next = { nextNumber(): Promise<unknown>; next(): Promise<unknown>; nextNow(): Promise<unknown> };

/** Closed-loop callers over `ports` dedicated clients for `ms`: calls answered, and failures. */
async function load(kernel: Kernel, service: string, method: 'nextNumber' | 'next' | 'nextNow', callers: number, ms: number, stop?: { until: Promise<unknown> }): Promise<{ calls: number; failed: number }> {
  const clients = Array.from({ length: Math.min(callers, 20) }, () => kernel.client<Next>(service, { dedicated: true }));
  let calls = 0;
  let failed = 0;
  let done = false;
  const until = performance.now() + ms;
  void stop?.until.then(() => (done = true));
  await Promise.all(
    Array.from({ length: callers }, async (_, index) => {
      const client = clients[index % clients.length]!;
      while (stop ? !done : performance.now() < until) {
        try {
          await client[method]();
          calls++;
        } catch {
          failed++;
        }
      }
    }),
  );
  return { calls, failed };
}

export async function benchDurability(options: { quick: boolean; onLog(record: LogRecord): void }): Promise<DurabilityResult> {
  const callers = 200;
  const rounds = options.quick ? 2 : 6;
  const roundMs = options.quick ? 500 : 1500;
  const stateDir = await mkdtemp(join(tmpdir(), 'theseus-bench-durability-'));
  const reply = await Kernel.start({ release: '0.1.0', services: { sequence: { entry: sequenceEntry, durability: 'reply' } }, stateDir: join(stateDir, 'reply'), onLog: options.onLog });
  const none = await Kernel.start({ release: '0.1.0', services: { sequence: { entry: sequenceEntry } }, checkpointIntervalMs: 0, checkpointEveryChanges: 0, onLog: options.onLog });
  const replyRates: number[] = [];
  const noneRates: number[] = [];
  let failedCalls = 0;
  let replyCalls = 0;
  let replyMs = 0;
  try {
    await load(reply, 'sequence', 'nextNumber', callers, 200);
    await load(none, 'sequence', 'nextNumber', callers, 200);
    const writesBefore = (await reply.status())[0]!.durableWrites;
    for (let round = 0; round < rounds; round++) {
      // Alternating, so the shared machine's drift hits both alike.
      for (const [kernel, rates] of round % 2 === 0 ? ([[reply, replyRates], [none, noneRates]] as const) : ([[none, noneRates], [reply, replyRates]] as const)) {
        const started = performance.now();
        const { calls, failed } = await load(kernel, 'sequence', 'nextNumber', callers, roundMs);
        const elapsed = performance.now() - started;
        rates.push((calls / elapsed) * 1000);
        failedCalls += failed;
        if (kernel === reply) {
          replyCalls += calls;
          replyMs += elapsed;
        }
      }
    }
    const writes = (await reply.status())[0]!.durableWrites - writesBefore;
    const writesPerSec = (writes / replyMs) * 1000;
    const replyCallsPerSec = median(replyRates);
    const noneCallsPerSec = median(noneRates);
    return {
      callers,
      rounds,
      replyCallsPerSec: Math.round(replyCallsPerSec),
      noneCallsPerSec: Math.round(noneCallsPerSec),
      ratio: Math.round((replyCallsPerSec / noneCallsPerSec) * 100) / 100,
      writesPerSec: Math.round(writesPerSec),
      fsyncsPerSec: Math.round(writesPerSec * 2),
      callsPerWrite: Math.round((replyCalls / Math.max(1, writes)) * 10) / 10,
      failedCalls,
    };
  } finally {
    await reply.stop();
    await none.stop();
    await rm(stateDir, { recursive: true, force: true });
  }
}

export async function benchBacklogSwap(options: { quick: boolean; onLog(record: LogRecord): void }): Promise<BacklogSwapResult> {
  const callers = 200;
  const swaps = options.quick ? 4 : 10;
  const kernel = await Kernel.start({ release: '1.0.0', services: { backlog: { entry: backlogEntry('v1') } }, onLog: options.onLog });
  const target = (index: number) =>
    index % 2 === 0 ? { release: '1.1.0', services: { backlog: { entry: backlogEntry('v2') } } } : { release: '1.0.0', services: { backlog: { entry: backlogEntry('v1') } } };
  const idle: number[] = [];
  const steady: number[] = [];
  const busy: number[] = [];
  const carried: number[] = [];
  const drained: number[] = [];
  let failedCalls = 0;
  let swap = 0;
  const swapOnce = async () => {
    const report = swap % 2 === 0 ? await kernel.upgrade(target(swap)) : await kernel.downgrade(target(swap));
    swap++;
    return report.services[0]!;
  };
  /** `swaps` swaps while 200 callers call `method`, each swap after a moment of load. */
  const underLoad = async (method: 'next' | 'nextNow', pauses: number[]) => {
    let stopLoad!: () => void;
    const until = new Promise<void>((resolve) => (stopLoad = resolve));
    const running = load(kernel, 'backlog', method, callers, 0, { until });
    await new Promise((resolve) => setTimeout(resolve, 300));
    for (let i = 0; i < swaps; i++) {
      const service = await swapOnce();
      pauses.push(service.pauseMs);
      if (method === 'next') {
        carried.push(service.carried);
        drained.push(service.drainMs);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    stopLoad();
    failedCalls += (await running).failed;
  };
  try {
    for (let i = 0; i < swaps; i++) idle.push((await swapOnce()).pauseMs);
    await underLoad('nextNow', steady);
    await underLoad('next', busy);
  } finally {
    await kernel.stop();
  }
  const pauseMsBacklog = median(busy);
  const pauseMsNoBacklog = median(steady);
  return {
    callers,
    swaps,
    pauseMsBacklog: Math.round(pauseMsBacklog * 1000) / 1000,
    pauseMsNoBacklog: Math.round(pauseMsNoBacklog * 1000) / 1000,
    pauseMsIdle: Math.round(median(idle) * 1000) / 1000,
    ratio: Math.round((pauseMsBacklog / pauseMsNoBacklog) * 100) / 100,
    carried: median(carried),
    drainMs: Math.round(median(drained) * 1000) / 1000,
    failedCalls,
  };
}
