// Ten idle services swapped as one step: the swap end to end, and each service's pause. Every
// service waits for the slowest before the switch, so this is where per-service costs add up.
// The swaps alternate between the direct path and the path through the kernel (`swaps` of each),
// in the same kernel. Part of `npm run bench`; alone, with the median time of each pause step:
//   node --import tsx scripts/bench/ten-services.ts [swaps] [spareWorkers]
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Kernel, type LogRecord } from '../../kernel/index.ts';
import type { SwapPath } from '../../kernel/main/kernel-context.ts';

const here = dirname(fileURLToPath(import.meta.url));

export interface TenServicesResult {
  swaps: number;
  /** Medians over the swaps: upgrade() end to end, and each service's pause (and the worst pause). */
  endToEndMs: number;
  pauseMs: number;
  pauseMaxMs: number;
  /** Each pause step, median ms after that service's old worker stopped taking messages. */
  stepMs: Record<string, number>;
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

/** The direct path's figures, and the path through the kernel's under throughKernel. */
export type TenServicesPaths = TenServicesResult & { throughKernel: TenServicesResult };

interface PathRecord {
  totals: number[];
  pauses: number[];
  steps: Array<Record<string, number>>;
}

/** `directOnly`: no swap through the kernel (its figures are then those of the direct path, unused). */
export async function benchTenServices(options: { swaps: number; spareWorkers?: number; directOnly?: boolean; onLog(record: LogRecord): void }): Promise<TenServicesPaths> {
  const before = { bytes: process.env.THESEUS_BENCH_STATE_BYTES, shape: process.env.THESEUS_BENCH_STATE_SHAPE };
  process.env.THESEUS_BENCH_STATE_BYTES = '1024';
  process.env.THESEUS_BENCH_STATE_SHAPE = 'blob';
  const names = Array.from({ length: 10 }, (_, index) => `blob${index}`);
  const release = (code: 'v1' | 'v2') => Object.fromEntries(names.map((name) => [name, { entry: join(here, 'services', `blob-${code}.ts`) }]));
  const records: Record<SwapPath, PathRecord> = {
    direct: { totals: [], pauses: [], steps: [] },
    'through-kernel': { totals: [], pauses: [], steps: [] },
  };
  let path: SwapPath = 'direct';
  const onLog = (record: LogRecord) => {
    if (record.message.endsWith('pause steps')) records[path].steps.push(record.data as Record<string, number>);
    else options.onLog(record);
  };
  const kernel = await Kernel.start({ release: '1.0.0', services: release('v1'), onLog, ...(options.spareWorkers === undefined ? {} : { spareWorkers: options.spareWorkers }) });
  try {
    // Not counted: the first swap bundles the other code and warms the JIT, for whichever path ran it.
    await kernel.upgrade({ release: '1.0.1', services: release('v2') });
    await kernel.upgrade({ release: '1.0.2', services: release('v1') });
    for (const record of Object.values(records)) record.steps.length = 0;
    const paths: SwapPath[] = options.directOnly ? ['direct'] : ['direct', 'through-kernel'];
    for (let i = 0; i < options.swaps * paths.length; i++) {
      path = paths[i % paths.length]!;
      await new Promise((resolve) => setTimeout(resolve, 100));
      if (path === 'direct') await kernel.sparesReady();
      const report = await kernel.upgrade({ release: `1.0.${i + 3}`, services: release(i % 2 === 0 ? 'v2' : 'v1'), swapPath: path });
      records[path].totals.push(report.totalMs);
      records[path].pauses.push(...report.services.map((service) => service.pauseMs));
    }
  } finally {
    await kernel.stop();
    // Assigning undefined would leave the string 'undefined'.
    if (before.bytes === undefined) delete process.env.THESEUS_BENCH_STATE_BYTES;
    else process.env.THESEUS_BENCH_STATE_BYTES = before.bytes;
    if (before.shape === undefined) delete process.env.THESEUS_BENCH_STATE_SHAPE;
    else process.env.THESEUS_BENCH_STATE_SHAPE = before.shape;
  }
  const direct = summarize(records.direct);
  return { ...direct, throughKernel: options.directOnly ? direct : summarize(records['through-kernel']) };
}

function summarize({ totals, pauses, steps }: PathRecord): TenServicesResult {
  const stepNames = [...new Set(steps.flatMap((record) => Object.keys(record)))];
  const stepMs = Object.fromEntries(
    stepNames
      .map((name) => [name, median(steps.map((record) => record[name]).filter((value): value is number => value !== undefined))] as const)
      .sort((a, b) => a[1] - b[1]),
  );
  return { swaps: totals.length, endToEndMs: median(totals), pauseMs: median(pauses), pauseMaxMs: Math.max(...pauses), stepMs };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const result = await benchTenServices({
    swaps: Number(process.argv[2] ?? '6'),
    ...(process.argv[3] === undefined ? {} : { spareWorkers: Number(process.argv[3]) }),
    onLog: (record) => {
      if (record.level === 'warn' || record.level === 'error') process.stderr.write(`${record.level}: ${record.message}\n`);
    },
  });
  for (const [path, figures] of [['direct', result], ['through the kernel', result.throughKernel]] as const) {
    console.log(`ten services, ${path}, ${figures.swaps} swaps: end to end median ${figures.endToEndMs} ms; each pause median ${figures.pauseMs} ms, max ${figures.pauseMaxMs} ms`);
    console.log(`  each step, median ms after that service stopped taking messages: ${Object.entries(figures.stepMs).map(([name, ms]) => `${name} ${ms}`).join(', ')}`);
  }
}
