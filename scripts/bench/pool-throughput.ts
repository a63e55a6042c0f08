// Pooled throughput: a CPU-bound call (fib) served by a pooled service with one thread per core,
// against the same module served by one stateful worker. Both run in their own kernel, in
// alternating rounds of closed-loop callers, so the machine's drift hits both alike; each figure
// is the median of its rounds.

import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Kernel, type ClientOf, type LogRecord } from '../../kernel/index.ts';
import type cpuWorkService from './services/cpu-work.ts';

const entry = fileURLToPath(new URL('./services/cpu-work.ts', import.meta.url));
/** About a millisecond of work per call on a current core: the thread hop is a small part of it. */
const FIB_N = 25;
const EXPECTED = 75025;

export interface PoolThroughputResult {
  poolSize: number;
  fibN: number;
  rounds: number;
  pooledCallsPerSec: number;
  oneWorkerCallsPerSec: number;
  /** pooled / one worker. */
  ratio: number;
  /**
   * CPU the whole process used during the pooled rounds, in cores: near poolSize when the machine
   * gave the pool its cores, near 1 when something else held them (a shared machine).
   */
  pooledCoresUsed: number;
  calls: number;
  failedCalls: number;
}

type Api = ClientOf<typeof cpuWorkService>;

async function runRound(client: Api, callers: number, ms: number): Promise<{ callsPerSec: number; calls: number; failed: number; cores: number }> {
  const cpuBefore = process.cpuUsage();
  let calls = 0;
  let failed = 0;
  const until = performance.now() + ms;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: callers }, async () => {
      while (performance.now() < until) {
        const reply = await client.work(FIB_N).catch(() => null);
        if (reply === EXPECTED) calls++;
        else failed++;
      }
    }),
  );
  const elapsed = performance.now() - started;
  const cpu = process.cpuUsage(cpuBefore);
  return { callsPerSec: (calls / elapsed) * 1000, calls, failed, cores: (cpu.user + cpu.system) / 1000 / elapsed };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor((sorted.length - 1) / 2)]!;
}

export async function benchPoolThroughput(options: { quick: boolean; onLog: (record: LogRecord) => void }): Promise<PoolThroughputResult> {
  const poolSize = availableParallelism();
  const rounds = options.quick ? 2 : 5;
  const roundMs = options.quick ? 300 : 1000;
  // Enough callers to keep every thread busy, with a call queued behind each.
  const callers = poolSize * 2;
  const pooled = await Kernel.start({ release: '1.0.0', services: { cpu: { entry, pool: { size: poolSize } } }, onLog: options.onLog });
  const single = await Kernel.start({ release: '1.0.0', services: { cpu: { entry } }, onLog: options.onLog });
  try {
    const clients = { pooled: pooled.client<Api>('cpu'), single: single.client<Api>('cpu') };
    // Warm-up: the JIT compiles fib in every thread before anything is counted.
    await runRound(clients.pooled, callers, 100);
    await runRound(clients.single, callers, 100);
    const perSec = { pooled: [] as number[], single: [] as number[] };
    const pooledCores: number[] = [];
    let calls = 0;
    let failed = 0;
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? (['pooled', 'single'] as const) : (['single', 'pooled'] as const);
      for (const which of order) {
        const result = await runRound(clients[which], callers, roundMs);
        perSec[which].push(result.callsPerSec);
        if (which === 'pooled') pooledCores.push(result.cores);
        calls += result.calls;
        failed += result.failed;
      }
    }
    const pooledCallsPerSec = Math.round(median(perSec.pooled));
    const oneWorkerCallsPerSec = Math.round(median(perSec.single));
    return {
      poolSize,
      fibN: FIB_N,
      rounds,
      pooledCallsPerSec,
      oneWorkerCallsPerSec,
      ratio: Math.round((pooledCallsPerSec / oneWorkerCallsPerSec) * 1000) / 1000,
      pooledCoresUsed: Math.round(median(pooledCores) * 100) / 100,
      calls,
      failedCalls: failed,
    };
  } finally {
    await Promise.all([pooled.stop(), single.stop()]);
  }
}
