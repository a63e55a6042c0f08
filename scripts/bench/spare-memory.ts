// What a warm spare worker would cost at idle: the process's RSS grown by ten idle workers of
// the kernel's runtime (each with the smallest service, the sequence server 0.1.0, loaded and
// serving), against ten bare Workers started with the same flags (execArgv: []) that only wait
// for a message. The kernel's own cost is taken out by running it with 1 and with 11 services:
//   node --import tsx scripts/bench/spare-memory.ts bare|runtime <workers>   (each in a fresh process)
import { Worker } from 'node:worker_threads';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Kernel } from '../../kernel/index.ts';

const here = dirname(fileURLToPath(import.meta.url));
const kind = process.argv[2];
const count = Number(process.argv[3] ?? '10');
const settle = async () => {
  for (let i = 0; i < 5; i++) {
    (globalThis as { gc?: () => void }).gc?.();
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return process.memoryUsage().rss;
};
const before = await settle();
let stop: () => Promise<unknown>;
if (kind === 'bare') {
  const workers = Array.from({ length: count }, () => new Worker("require('node:worker_threads').parentPort.on('message', () => {})", { eval: true, execArgv: [] }));
  await Promise.all(workers.map((worker) => new Promise((resolve) => worker.once('online', resolve))));
  stop = () => Promise.all(workers.map((worker) => worker.terminate()));
} else if (kind === 'runtime') {
  const entry = join(here, '..', '..', 'services', 'sequence', '0.1.0', 'sequence.ts');
  const services = Object.fromEntries(Array.from({ length: count }, (_, index) => [`sequence${index}`, { entry }]));
  const kernel = await Kernel.start({ release: '0.1.0', services, onLog: () => undefined });
  stop = () => kernel.stop();
} else {
  throw new Error(`expected bare or runtime, not ${kind}`);
}
const after = await settle();
console.log(`${kind}: ${count} idle workers: RSS grew ${((after - before) / 1024 / 1024).toFixed(1)} MB`);
await stop();
