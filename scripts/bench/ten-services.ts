// Ten idle services swapped as one step: the swap end to end, and each service's pause. Every
// service waits for the slowest before the switch, so this is where per-service costs add up.
// Run: node --import tsx scripts/bench/ten-services.ts [swaps]
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Kernel, type LogRecord } from '../../kernel/index.ts';

const here = dirname(fileURLToPath(import.meta.url));
const swaps = Number(process.argv[2] ?? '6');
process.env.THESEUS_BENCH_STATE_BYTES = '1024';
process.env.THESEUS_BENCH_STATE_SHAPE = 'blob';
const names = Array.from({ length: 10 }, (_, index) => `blob${index}`);
const release = (code: 'v1' | 'v2') => Object.fromEntries(names.map((name) => [name, { entry: join(here, 'services', `blob-${code}.ts`) }]));
const steps: Array<Record<string, number>> = [];
const onLog = (record: LogRecord) => {
  if (record.message.endsWith('pause steps')) steps.push(record.data as Record<string, number>);
  else if (record.level === 'warn' || record.level === 'error') process.stderr.write(`${record.level}: ${record.message}\n`);
};
const kernel = await Kernel.start({ release: '1.0.0', services: release('v1'), onLog });
const totals: number[] = [];
const pauses: number[] = [];
for (let i = 0; i < swaps; i++) {
  await new Promise((resolve) => setTimeout(resolve, 100));
  const report = await kernel.upgrade({ release: `1.0.${i + 1}`, services: release(i % 2 === 0 ? 'v2' : 'v1') });
  totals.push(report.totalMs);
  pauses.push(...report.services.map((service) => service.pauseMs));
}
await kernel.stop();
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
console.log(`ten services, ${swaps} swaps: end to end median ${median(totals)} ms (max ${Math.max(...totals)}); each pause median ${median(pauses)} ms, max ${Math.max(...pauses)} ms`);
const stepNames = [...new Set(steps.flatMap((record) => Object.keys(record)))];
const stepMedians = stepNames.map((name) => [name, median(steps.map((record) => record[name]!).filter((value) => value !== undefined))] as const);
console.log(`each step, median ms after that service stopped taking messages: ${stepMedians.sort((a, b) => a[1] - b[1]).map(([name, ms]) => `${name} ${ms}`).join(', ')}`);
