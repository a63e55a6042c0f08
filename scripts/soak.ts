// `npm run soak -- --minutes N`: keeps concurrent callers on the sequence server and swaps its code
// every few seconds (0.1.0 -> 0.2.0 -> 0.3.0 -> 0.2.0 -> 0.1.0 ..., state migrations included),
// printing calls, errors, worker threads and RSS as it goes. It fails (exit 1) on any failed
// call or swap, on a number handed out twice or skipped, on worker threads that keep growing, or
// on RSS that grows more than 10 % after the warm-up: RSS is sampled four times a second, and the
// median of the last third of the samples is compared with the median of the first third
// (scripts/soak/memory-trend.ts), since single samples jump by several percent.
//
// Options: --minutes N (default 1), --swap-every-ms N (default 2000), --callers N (default 200).
// THESEUS_FAULTS=leak-per-swap:<MB> makes the soak itself keep that many MB more after every swap:
// a deliberate leak, to show that the memory gate catches one (.ci/run runs it, expecting a failure).

import { readdir } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { Kernel, type LogRecord } from '../kernel/index.ts';
import { sequenceNumber } from '../services/sequence/shared/reply.ts';
import { memoryTrend } from './soak/memory-trend.ts';

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '1' },
    'swap-every-ms': { type: 'string', default: '2000' },
    callers: { type: 'string', default: '200' },
    help: { type: 'boolean' },
  },
});
if (values.help) {
  process.stdout.write('Usage: npm run soak -- [--minutes N] [--swap-every-ms N] [--callers N]\n');
  process.exit(0);
}
const minutes = Number(values.minutes);
const swapEveryMs = Number(values['swap-every-ms']);
const callerCount = Number(values.callers);
if (!(minutes > 0) || !(swapEveryMs > 0) || !(callerCount > 0)) {
  process.stderr.write('soak: --minutes, --swap-every-ms and --callers take positive numbers\n');
  process.exit(2);
}

const repo = fileURLToPath(new URL('..', import.meta.url));
type Version = '0.1.0' | '0.2.0' | '0.3.0';
const release = (version: Version) => ({ release: version, services: { sequence: { entry: `${repo}services/sequence/${version}/sequence.ts` } } });
// Up and down through all three, so both migrations run again and again.
const cycle: Version[] = ['0.2.0', '0.3.0', '0.2.0', '0.1.0'];

const say = (line: string) => process.stdout.write(`${line}\n`);
const gc = (globalThis as { gc?: () => void }).gc;
const rssMb = () => {
  gc?.();
  return process.memoryUsage().rss / 1048576;
};
const osThreads = async () => (await readdir('/proc/self/task')).length;
/** A test-only leak (see the header): MB kept after each swap, never freed. */
const leakMbPerSwap = Number(/(?:^|,)leak-per-swap:(\d+(?:\.\d+)?)/.exec(process.env.THESEUS_FAULTS ?? '')?.[1] ?? 0);
const leaked: Buffer[] = [];

async function main(): Promise<number> {
  const kernelErrors: string[] = [];
  const kernel = await Kernel.start({
    ...release('0.1.0'),
    onLog: (record: LogRecord) => {
      if (record.level === 'error') kernelErrors.push(`${record.service}: ${record.message}`);
    },
  });
  const clients = Array.from({ length: 20 }, () => kernel.client<{ nextNumber(): Promise<unknown> }>('sequence', { dedicated: true }));
  // Consecutive and never repeated, checked as the numbers arrive, in memory that does not grow
  // with the run: the lowest number not seen yet, and the few seen above it.
  let nextExpected = 456;
  const seenAhead = new Set<number>();
  let answered = 0;
  let repeats = 0;
  const record = (n: number) => {
    answered++;
    if (n < nextExpected || seenAhead.has(n)) {
      repeats++;
      return;
    }
    seenAhead.add(n);
    while (seenAhead.delete(nextExpected)) nextExpected++;
  };
  const failures: unknown[] = [];
  let calls = 0;
  let stop = false;
  const callers = Array.from({ length: callerCount }, async (_, index) => {
    const client = clients[index % clients.length]!;
    let previous = -Infinity;
    while (!stop) {
      calls++;
      try {
        const n = sequenceNumber(await client.nextNumber());
        if (n <= previous) failures.push(new Error(`a caller got ${n} after ${previous}`));
        previous = n;
        record(n);
      } catch (error) {
        failures.push(error);
      }
    }
  });

  const durationMs = minutes * 60_000;
  const warmUpMs = Math.min(20_000, durationMs / 4);
  const started = Date.now();
  let swaps = 0;
  let swapFailures = 0;
  let baselineThreads = 0;
  const threadSamples: number[] = [];
  // RSS after the warm-up, four times a second, after a GC so garbage does not count.
  const rssSamples: number[] = [];
  const sampler = setInterval(() => {
    if (Date.now() - started >= warmUpMs) rssSamples.push(rssMb());
  }, 250);
  let lastReport = 0;
  say(`soak: ${minutes} min, ${callerCount} callers, a swap every ${swapEveryMs} ms`);
  say('elapsed  swaps  calls        errors  threads  workers  rss MB');
  while (Date.now() - started < durationMs && failures.length === 0) {
    await new Promise((resolve) => setTimeout(resolve, swapEveryMs));
    const target = cycle[swaps % cycle.length]!;
    try {
      await kernel.upgrade(release(target));
    } catch (error) {
      swapFailures++;
      failures.push(error);
    }
    swaps++;
    if (leakMbPerSwap > 0) leaked.push(Buffer.alloc(leakMbPerSwap * 1048576, 1));
    const elapsed = Date.now() - started;
    const threads = await osThreads();
    const rss = rssMb();
    if (elapsed >= warmUpMs) {
      if (threadSamples.length === 0) baselineThreads = threads;
      threadSamples.push(threads);
    }
    if (elapsed - lastReport >= 5000 || elapsed >= durationMs) {
      lastReport = elapsed;
      say(
        `${(elapsed / 1000).toFixed(0).padStart(5)} s  ${String(swaps).padStart(5)}  ${String(calls).padEnd(11)}  ${String(failures.length).padStart(6)}  ` +
          `${String(threads).padStart(7)}  ${String(kernel.threadIds.length).padStart(7)}  ${rss.toFixed(1).padStart(6)}`,
      );
    }
  }
  stop = true;
  clearInterval(sampler);
  await Promise.all(callers);
  await kernel.stop();

  // The verdicts. Every call has been answered, so nothing seen may be left above a hole.
  const gaps = seenAhead.size;
  // Measured while the kernel still ran (after a GC), so memory held by workers counts.
  const trend = memoryTrend(rssSamples);
  const rssGrowth = trend?.growth ?? 0;
  const threadsGrew = threadSamples.length > 2 && Math.min(...threadSamples.slice(-3)) > baselineThreads + 2;
  say('');
  say(`calls ${calls}, answered ${answered}, failed ${failures.length}, swaps ${swaps} (${swapFailures} failed)`);
  say(`numbers: ${repeats} repeated, ${gaps} gaps; kernel errors logged: ${kernelErrors.length}`);
  say(
    trend
      ? `rss: median ${trend.first.toFixed(1)} MB in the first third after warm-up, ${trend.last.toFixed(1)} MB in the last third (${(rssGrowth * 100).toFixed(1)} %; ${rssSamples.length} samples)`
      : `rss: too few samples after the warm-up for a verdict (${rssSamples.length})`,
  );
  if (leakMbPerSwap > 0) say(`(a deliberate leak of ${leakMbPerSwap} MB per swap was on: ${leaked.length * leakMbPerSwap} MB kept)`);
  say(`OS threads: ${baselineThreads} after warm-up, ${threadSamples.at(-1) ?? '-'} at the end`);
  const problems = [
    failures.length > 0 ? `${failures.length} failures, first: ${String(failures[0])}` : '',
    repeats + gaps > 0 ? 'numbers were repeated or skipped' : '',
    kernelErrors.length > 0 ? `kernel errors: ${kernelErrors[0]}` : '',
    threadsGrew ? 'worker threads kept growing' : '',
    rssGrowth > 0.1 ? `RSS grew ${(rssGrowth * 100).toFixed(1)} % after warm-up (median of the last third against the first)` : '',
    trend === null ? 'too few RSS samples after the warm-up to judge memory' : '',
    answered === 0 ? 'no call was answered' : '',
    answered + failures.length !== calls ? `${calls - answered - failures.length} calls were never answered` : '',
  ].filter(Boolean);
  say(problems.length === 0 ? 'soak OK' : `soak FAILED: ${problems.join('; ')}`);
  return problems.length === 0 ? 0 : 1;
}

process.exitCode = await main();
