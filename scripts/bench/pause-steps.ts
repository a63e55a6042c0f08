// Where a swap's pause goes: swaps the blob service back and forth under closed-loop callers and
// prints, per step, the median and max of its stamp in ms after the old worker stopped taking
// messages. Each stamp is taken in the thread where the step happened (the kernel logs them at
// debug level after each switch). Run:
//   node --import tsx scripts/bench/pause-steps.ts [1KB|1MB|objects1MB] [swaps] [callers] [spareWorkers]
// With spares, each swap waits until they are ready, so every new worker is one.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Kernel, type LogRecord } from '../../kernel/index.ts';

const here = dirname(fileURLToPath(import.meta.url));
const [sizeArg = '1KB', swapsArg = '10', callersArg = '50', sparesArg] = process.argv.slice(2);
const shapes: Record<string, { shape: string; bytes: number }> = {
  '1KB': { shape: 'blob', bytes: 1024 },
  '1MB': { shape: 'blob', bytes: 1024 * 1024 },
  objects1MB: { shape: 'objects', bytes: 1024 * 1024 },
};
const chosen = shapes[sizeArg];
if (!chosen) throw new Error(`unknown size ${sizeArg}: expected one of ${Object.keys(shapes).join(', ')}`);
process.env.THESEUS_BENCH_STATE_BYTES = String(chosen.bytes);
process.env.THESEUS_BENCH_STATE_SHAPE = chosen.shape;

const steps: Array<Record<string, number>> = [];
const onLog = (record: LogRecord) => {
  if (record.message.endsWith('pause steps')) steps.push(record.data as Record<string, number>);
  else if (record.level === 'warn' || record.level === 'error') process.stderr.write(`${record.level}: ${record.message}\n`);
};
const entry = (code: 'v1' | 'v2') => join(here, 'services', `blob-${code}.ts`);
const kernel = await Kernel.start({ release: '1.0.0', services: { blob: { entry: entry('v1') } }, onLog, ...(sparesArg === undefined ? {} : { spareWorkers: Number(sparesArg) }) });
const client = kernel.client<{ next(): Promise<string> }>('blob');
let running = true;
let failed = 0;
const loops = Array.from({ length: Number(callersArg) }, async () => {
  while (running) await client.next().catch(() => failed++);
});
const pauses: number[] = [];
const totals: number[] = [];
for (let i = 0; i < Number(swapsArg); i++) {
  await new Promise((resolve) => setTimeout(resolve, 100));
  await kernel.sparesReady();
  const report = await kernel.upgrade({ release: `1.0.${i + 1}`, services: { blob: { entry: entry(i % 2 === 0 ? 'v2' : 'v1') } } });
  pauses.push(report.services[0]!.pauseMs);
  totals.push(report.totalMs);
}
running = false;
await Promise.all(loops);
await kernel.stop();

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const round = (value: number) => Math.round(value * 1000) / 1000;
const names = [...new Set(steps.flatMap((record) => Object.keys(record)))];
const rows = names
  .map((name) => {
    const values = steps.map((record) => record[name]).filter((value): value is number => value !== undefined);
    return { step: name, medianMs: round(median(values)), maxMs: round(Math.max(...values)) };
  })
  .sort((a, b) => a.medianMs - b.medianMs);
console.log(`${sizeArg}, ${swapsArg} swaps, ${callersArg} callers, ${kernel.spareWorkers.taken} new workers from spares, failed calls ${failed}`);
console.table(rows);
console.log(`pause median ${median(pauses)} ms, max ${Math.max(...pauses)} ms; swap end to end median ${median(totals)} ms`);
