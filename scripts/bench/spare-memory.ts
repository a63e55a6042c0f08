// What a warm spare worker costs at idle: the RSS of a fresh process grown by N idle workers of
// one kind, per worker. Each kind runs in a process of its own, so one kind's garbage does not
// count against the other:
//   bare     Workers started with the flags a service worker gets (execArgv: []) that only wait;
//   spare    the kernel's warm spares (kernel/main/spare-workers.ts): the worker runtime booted,
//            no service code;
//   runtime  service workers, each with the smallest service (the sequence server 0.1.0) loaded
//            and serving; the kernel's own cost is taken out by running it with 1 and N+1 services.
// `npm run bench` runs bare and spare (benchSpareMemory). Alone:
//   node --expose-gc --import tsx scripts/bench/spare-memory.ts bare|spare|runtime <workers>
import { execFile } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Worker } from 'node:worker_threads';
import { Kernel } from '../../kernel/index.ts';
import { SpareWorkers } from '../../kernel/main/spare-workers.ts';
import { workerRuntimeBundle, defaultCacheDir } from '../../kernel/release/bundler.ts';

const here = dirname(fileURLToPath(import.meta.url));
const MB = 1024 * 1024;

export interface SpareMemoryResult {
  workers: number;
  /** RSS grown per idle worker, in MB. */
  spareIdleRssMb: number;
  bareWorkerIdleRssMb: number;
}

/** Both kinds, each in a fresh process, at the same time (RSS is per process). */
export async function benchSpareMemory(options: { quick: boolean }): Promise<SpareMemoryResult> {
  const workers = options.quick ? 4 : 10;
  const run = async (kind: 'bare' | 'spare') => {
    const { stdout } = await promisify(execFile)(process.execPath, ['--expose-gc', '--import', 'tsx', fileURLToPath(import.meta.url), kind, String(workers), options.quick ? '3' : '5'], {
      cwd: join(here, '..', '..'),
    });
    const perWorker = /per worker ([\d.]+) MB/.exec(stdout)?.[1];
    if (!perWorker) throw new Error(`spare-memory ${kind} printed no figure: ${stdout}`);
    return Number(perWorker);
  };
  const [spare, bare] = await Promise.all([run('spare'), run('bare')]);
  return { workers, spareIdleRssMb: spare, bareWorkerIdleRssMb: bare };
}

async function measure(kind: string, count: number, settleRounds: number): Promise<void> {
  const settle = async () => {
    for (let i = 0; i < settleRounds; i++) {
      (globalThis as { gc?: () => void }).gc?.();
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    return process.memoryUsage().rss;
  };
  // Bundled before the baseline, so esbuild's own memory is in both readings.
  const runtimeFile = (await workerRuntimeBundle(defaultCacheDir())).file;
  const before = await settle();
  let stop: () => Promise<unknown>;
  const workers = count;
  if (kind === 'bare') {
    const threads = Array.from({ length: count }, () => new Worker("require('node:worker_threads').parentPort.on('message', () => {})", { eval: true, execArgv: [] }));
    await Promise.all(threads.map((worker) => new Promise((resolve) => worker.once('online', resolve))));
    stop = () => Promise.all(threads.map((worker) => worker.terminate()));
  } else if (kind === 'spare') {
    const spares = new SpareWorkers(count, async () => runtimeFile, () => undefined);
    await spares.start();
    // Spares do not keep a process alive on their own (a kernel's service workers do).
    const alive = setInterval(() => undefined, 1000);
    await spares.whenFull();
    clearInterval(alive);
    stop = () => spares.stop();
  } else if (kind === 'runtime') {
    const entry = join(here, '..', '..', 'services', 'sequence', '0.1.0', 'sequence.ts');
    const services = Object.fromEntries(Array.from({ length: count }, (_, index) => [`sequence${index}`, { entry }]));
    const kernel = await Kernel.start({ release: '0.1.0', services, spareWorkers: 0, onLog: () => undefined });
    stop = () => kernel.stop();
  } else {
    throw new Error(`expected bare, spare or runtime, not ${kind}`);
  }
  const after = await settle();
  const grown = (after - before) / MB;
  console.log(`${kind}: ${workers} idle workers: RSS grew ${grown.toFixed(1)} MB, per worker ${(grown / workers).toFixed(2)} MB`);
  await stop();
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  await measure(process.argv[2] ?? '', Number(process.argv[3] ?? '10'), Number(process.argv[4] ?? '5'));
}
