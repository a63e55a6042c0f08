// Ten idle services swapped as one step: the swap end to end, and each service's pause. Every
// service waits for the slowest before the switch, so this is where per-service costs add up.
// Part of `npm run bench`; alone, with the median time of each pause step as well:
//   node --import tsx scripts/bench/ten-services.ts [swaps]
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Kernel, type LogRecord } from '../../kernel/index.ts';

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

export async function benchTenServices(options: { swaps: number; onLog(record: LogRecord): void }): Promise<TenServicesResult> {
  const before = { bytes: process.env.THESEUS_BENCH_STATE_BYTES, shape: process.env.THESEUS_BENCH_STATE_SHAPE };
  process.env.THESEUS_BENCH_STATE_BYTES = '1024';
  process.env.THESEUS_BENCH_STATE_SHAPE = 'blob';
  const names = Array.from({ length: 10 }, (_, index) => `blob${index}`);
  const release = (code: 'v1' | 'v2') => Object.fromEntries(names.map((name) => [name, { entry: join(here, 'services', `blob-${code}.ts`) }]));
  const steps: Array<Record<string, number>> = [];
  const onLog = (record: LogRecord) => {
    if (record.message.endsWith('pause steps')) steps.push(record.data as Record<string, number>);
    else options.onLog(record);
  };
  const kernel = await Kernel.start({ release: '1.0.0', services: release('v1'), onLog });
  const totals: number[] = [];
  const pauses: number[] = [];
  try {
    for (let i = 0; i < options.swaps; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      const report = await kernel.upgrade({ release: `1.0.${i + 1}`, services: release(i % 2 === 0 ? 'v2' : 'v1') });
      totals.push(report.totalMs);
      pauses.push(...report.services.map((service) => service.pauseMs));
    }
  } finally {
    await kernel.stop();
    // Assigning undefined would leave the string 'undefined'.
    if (before.bytes === undefined) delete process.env.THESEUS_BENCH_STATE_BYTES;
    else process.env.THESEUS_BENCH_STATE_BYTES = before.bytes;
    if (before.shape === undefined) delete process.env.THESEUS_BENCH_STATE_SHAPE;
    else process.env.THESEUS_BENCH_STATE_SHAPE = before.shape;
  }
  const stepNames = [...new Set(steps.flatMap((record) => Object.keys(record)))];
  const stepMs = Object.fromEntries(
    stepNames
      .map((name) => [name, median(steps.map((record) => record[name]).filter((value): value is number => value !== undefined))] as const)
      .sort((a, b) => a[1] - b[1]),
  );
  return { swaps: options.swaps, endToEndMs: median(totals), pauseMs: median(pauses), pauseMaxMs: Math.max(...pauses), stepMs };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const result = await benchTenServices({
    swaps: Number(process.argv[2] ?? '6'),
    onLog: (record) => {
      if (record.level === 'warn' || record.level === 'error') process.stderr.write(`${record.level}: ${record.message}\n`);
    },
  });
  console.log(`ten services, ${result.swaps} swaps: end to end median ${result.endToEndMs} ms; each pause median ${result.pauseMs} ms, max ${result.pauseMaxMs} ms`);
  console.log(`each step, median ms after that service stopped taking messages: ${Object.entries(result.stepMs).map(([name, ms]) => `${name} ${ms}`).join(', ')}`);
}
