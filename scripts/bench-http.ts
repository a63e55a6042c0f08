// `npm run bench:http`: the HTTP front door under load from autocannon (a client nobody here
// wrote), while the sequence app is upgraded and downgraded again and again.
//
//  1. Build releases 0.1.0, 0.2.0 and 0.3.0 of the sequence app, unpack 0.1.0's tarball into a
//     fresh deploy root and start the kernel there with its own bin/kernel (a real daemon).
//  2. Loads of `-c <connections>` keep-alive connections doing GET /next:
//       plain       a single-threaded node:http server doing the same work in its main thread
//                   (scripts/bench/plain-http-server.mjs);
//       steady      the front door, no upgrades (plain and steady alternate in short rounds, and
//                   their medians are compared, because the machine is shared and noisy);
//       upgrades    the front door while the kernel swaps 0.1.0 -> 0.2.0 -> 0.3.0 -> 0.2.0 ->
//                   0.1.0 -> ... (<upgrades> swaps, each one a full upgrade or downgrade with its
//                   probation, state migrations 0 <-> 1 included).
//  3. Every response's number is kept, and each connection's must rise. Across the front-door
//     loads every number handed out must reach exactly one response; the only ones allowed to be
//     missing belong to requests cut off when a load stopped (at most one per connection, between
//     that load's last numbers and the next load's first: scripts/bench/sequence-check.ts).
//
// Prints requests, non-2xx, errors and latency p50/p99/max per load (from autocannon's timing of
// every response, to a hundredth of a millisecond), and the ratios. `--json`
// prints one JSON object on stdout. The exit code is non-zero when a request failed, a response
// was not 2xx, a swap failed or the sequence broke; a missed performance target is reported only.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir, cpus } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { extract } from 'tar';
import { ControlConnection } from '../kernel/cli/control-client.ts';
import type { StatusResult } from '../kernel/common/control-protocol.ts';
import { buildRelease } from '../kernel/release/build.ts';
import { sequenceNumber } from '../services/sequence/shared/reply.ts';
import { checkSequence, type SequenceRecord } from './bench/sequence-check.ts';
import { kernelCli } from './bench/kernel-cli.ts';
import { helpIfAsked, positiveIntegers } from './bench/args.ts';

const usage = `Usage: npm run bench:http -- [options]

Loads the HTTP front door with autocannon while the kernel upgrades and downgrades, and compares
it with a plain node:http server doing the same work.

Options:
  --upgrades <n>      swaps during the upgrade load (default 20; 5 with --quick)
  --connections <n>   concurrent keep-alive connections (default 50)
  --duration <s>      seconds of each plain and steady load (default 5; 2 with --quick)
  --rounds <n>        alternating plain and steady loads, medians reported (default 3; 2 with --quick)
  --quick             a short run, for CI
  --json              print one JSON object on stdout (progress goes to stderr)
  -h, --help          show this help`;

const { values: options } = parseArgs({
  options: {
    upgrades: { type: 'string' },
    connections: { type: 'string' },
    duration: { type: 'string' },
    rounds: { type: 'string' },
    quick: { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
  strict: true,
});
helpIfAsked(options.help, usage);
const positiveInteger = positiveIntegers('bench:http', usage);

const quick = options.quick;
const UPGRADES = positiveInteger('upgrades', options.upgrades, quick ? 5 : 20);
const CONNECTIONS = positiveInteger('connections', options.connections, 50);
const DURATION_S = positiveInteger('duration', options.duration, quick ? 2 : 5);
const ROUNDS = positiveInteger('rounds', options.rounds, quick ? 2 : 3);
const WARMUP_S = quick ? 1 : 2;
const repo = fileURLToPath(new URL('..', import.meta.url));
const versions = ['0.1.0', '0.2.0', '0.3.0'] as const;
/** Up to the newest release and back down, as long as needed. */
const swapCycle = ['0.2.0', '0.3.0', '0.2.0', '0.1.0'] as const;

const progress = (line: string) => process.stderr.write(`${line}\n`);

interface LoadResult {
  name: string;
  requests: number;
  rps: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  resets: number;
  latencyMs: { p50: number; p99: number; max: number };
  durationS: number;
}

/** Runs autocannon against GET /next; `sequence` collects the numbers of the 2xx replies. */
function load(name: string, port: number, durationS: number, sequence: SequenceRecord | null, until?: Promise<void>): Promise<LoadResult> {
  const seen = { contexts: [] as Array<{ last?: number }>, outOfOrder: 0, lowest: null as number | null };
  // Every response's latency as autocannon timed it, in fractions of a millisecond: its own
  // summary rounds percentiles to whole milliseconds, too coarse for a 2 ms target.
  const latencies: number[] = [];
  return new Promise((resolve, reject) => {
    const instance = autocannon(
      {
        url: `http://127.0.0.1:${port}`,
        connections: CONNECTIONS,
        duration: until ? 3600 : durationS,
        timeout: 10,
        // autocannon starts a fresh request context each time a connection loops over its
        // requests; keep one per connection instead, to check that each connection's numbers rise.
        setupClient: (client) => {
          client.on('response', (_status: number, _bytes: number, responseTime: number) => latencies.push(responseTime));
          const iterator = (client as unknown as { requestIterator: { context: object; resetContext(): void } }).requestIterator;
          const context = {};
          iterator.context = context;
          iterator.resetContext = () => {
            iterator.context = context;
          };
        },
        requests: [
          {
            method: 'GET',
            path: '/next',
            onResponse: sequence
              ? (status: number, body: string, context: { last?: number }) => {
                  if (status < 200 || status >= 300) return;
                  const number = (JSON.parse(body) as { number: number }).number;
                  sequence.numbers.push(number);
                  if (seen.lowest === null || number < seen.lowest) seen.lowest = number;
                  if (context.last === undefined) seen.contexts.push(context);
                  else if (number <= context.last) seen.outOfOrder++;
                  context.last = number;
                }
              : undefined,
          },
        ],
      },
      (error, result) => {
        if (error) return reject(error);
        sequence?.loads.push({ lastPerConnection: seen.contexts.map((context) => context.last!), lowest: seen.lowest, outOfOrder: seen.outOfOrder });
        resolve({
          name,
          requests: result.requests.total,
          rps: result.requests.total / (result.duration || durationS),
          non2xx: result.non2xx,
          errors: result.errors,
          timeouts: result.timeouts,
          resets: (result as unknown as { resets?: number }).resets ?? 0,
          latencyMs: percentiles(latencies),
          durationS: result.duration,
        });
      },
    );
    void until?.then(() => instance.stop());
  });
}

/** p50, p99 and max, to a hundredth of a millisecond. */
function percentiles(values: number[]): LoadResult['latencyMs'] {
  const sorted = Float64Array.from(values).sort();
  const at = (fraction: number) => round(sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * fraction))] ?? 0, 2);
  return { p50: at(0.5), p99: at(0.99), max: round(sorted[sorted.length - 1] ?? 0, 2) };
}

async function startPlainServer(): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, [join(repo, 'scripts', 'bench', 'plain-http-server.mjs')], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout!.once('data', (chunk: Buffer) => resolve(Number(chunk.toString().trim())));
    child.once('exit', (code) => reject(new Error(`the plain server exited with ${code}`)));
  });
  return { child, port };
}

async function main(): Promise<number> {
  const work = await mkdtemp(join(tmpdir(), 'theseus-bench-http-'));
  const deploy = join(work, 'deploy');
  let kernelStarted = false;
  let plain: ChildProcess | null = null;
  try {
    progress(`bench:http: ${cpus().length} cores, ${CONNECTIONS} connections, ${UPGRADES} swaps${quick ? ' (quick)' : ''}`);
    for (const version of versions) {
      await buildRelease({ configFile: join(repo, 'services', 'sequence', version, 'theseus.config.ts'), outDir: join(work, 'build') });
    }
    await mkdir(deploy);
    await extract({ file: join(work, 'build', '0.1.0', 'sequence-0.1.0.tar.gz'), cwd: deploy });
    kernelCli(deploy, ['start']);
    kernelStarted = true;
    const operator = await ControlConnection.open(deploy);
    const status = (await operator.request('status', {})) as StatusResult;
    const frontDoorPort = status.http?.listeners[0]?.port;
    if (!frontDoorPort) throw new Error('the kernel opened no HTTP listener; the sequence release should declare one');
    const plainServer = await startPlainServer();
    plain = plainServer.child;

    progress('warming up both servers');
    await load('warm-up', plainServer.port, WARMUP_S, null);
    const numbers: SequenceRecord = { numbers: [], loads: [] };
    await load('warm-up', frontDoorPort, WARMUP_S, numbers);

    // The machine is shared and noisy: alternate the two in short rounds and take the medians.
    const plainRounds: LoadResult[] = [];
    const steadyRounds: LoadResult[] = [];
    for (let round = 1; round <= ROUNDS; round++) {
      progress(`round ${round} of ${ROUNDS}: plain node:http server, then the front door without upgrades, ${DURATION_S} s each`);
      // The client reads the plain server's numbers too, so both servers face the same client work.
      plainRounds.push(await load('plain node:http', plainServer.port, DURATION_S, { numbers: [], loads: [] }));
      steadyRounds.push(await load('front door', frontDoorPort, DURATION_S, numbers));
    }
    const plainResult = medianOf('plain node:http', plainRounds);
    const steady = medianOf('front door', steadyRounds);

    progress(`front door while the kernel swaps ${UPGRADES} times`);
    const swaps: Array<{ to: string; ok: boolean; error?: string }> = [];
    let swapsDone!: () => void;
    const finished = new Promise<void>((resolve) => (swapsDone = resolve));
    const upgrading = load('front door + swaps', frontDoorPort, 0, numbers, finished);
    await new Promise((resolve) => setTimeout(resolve, 500));
    for (let i = 0; i < UPGRADES; i++) {
      const to = swapCycle[i % swapCycle.length]!;
      const op = i % swapCycle.length < 2 ? 'upgrade' : 'downgrade';
      try {
        if (op === 'upgrade') await operator.request('upgrade', { source: join(work, 'build', to), commit: true }, { timeoutMs: 60_000 });
        else await operator.request('downgrade', { version: to, commit: true }, { timeoutMs: 60_000 });
        swaps.push({ to, ok: true });
      } catch (error) {
        swaps.push({ to, ok: false, error: (error as Error).message });
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
    swapsDone();
    const upgrades = await upgrading;

    // The next number the service would hand out, through the control socket: everything below
    // it was handed out once, to exactly one response (or to a request cut off at a load's end).
    const finalNext = ((await operator.request('call', { service: 'sequence', method: 'nextNumber', args: [] })) as { reply: number | string }).reply;
    const finalNumber = sequenceNumber(finalNext);
    const sequence = checkSequence(numbers, finalNumber);
    const finalStatus = (await operator.request('status', {})) as StatusResult;
    operator.close();

    const failedSwaps = swaps.filter((swap) => !swap.ok);
    const rpsRatioVsPlainServer = steady.rps / plainResult.rps;
    const p99AddedMsDuringUpgrades = round(upgrades.latencyMs.p99 - steady.latencyMs.p99, 2);
    const httpErrorsDuringUpgrades = upgrades.errors + upgrades.timeouts;
    const httpNon2xxDuringUpgrades = upgrades.non2xx;
    const summary = {
      cores: cpus().length,
      connections: CONNECTIONS,
      swaps: swaps.length,
      failedSwaps: failedSwaps.length,
      loads: { plain: plainResult, steady, upgrades },
      httpErrorsDuringUpgrades,
      httpNon2xxDuringUpgrades,
      rpsRatioVsPlainServer: round(rpsRatioVsPlainServer, 3),
      rpsRatioDuringUpgradesVsPlainServer: round(upgrades.rps / plainResult.rps, 3),
      p99AddedMsDuringUpgrades,
      sequence,
      releaseAtEnd: finalStatus.release,
      targets: {
        noErrorsOrNon2xx: httpErrorsDuringUpgrades === 0 && httpNon2xxDuringUpgrades === 0,
        sequenceConsecutive: sequence.repeats === 0 && sequence.unexplainedGaps === 0 && sequence.outOfOrder === 0,
        throughputAtLeast0_7xPlain: rpsRatioVsPlainServer >= 0.7,
        p99Within2msOfSteady: p99AddedMsDuringUpgrades <= 2,
      },
    };

    if (options.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
    else printReport(summary, swaps);
    const broken = failedSwaps.length > 0 || httpErrorsDuringUpgrades > 0 || httpNon2xxDuringUpgrades > 0 || steady.errors + steady.non2xx > 0 || !summary.targets.sequenceConsecutive;
    return broken ? 1 : 0;
  } finally {
    plain?.kill();
    if (kernelStarted) {
      try {
        kernelCli(deploy, ['stop']);
      } catch (error) {
        progress(`bench:http: stopping the kernel failed: ${(error as Error).message}`);
      }
    }
    await rm(work, { recursive: true, force: true });
  }
}

/** Totals of several rounds of one load, with the median rate and latencies. */
function medianOf(name: string, rounds: LoadResult[]): LoadResult {
  const median = (values: number[]) => {
    const sorted = [...values].sort((a, b) => a - b);
    const middle = Math.floor(sorted.length / 2);
    return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
  };
  const sum = (pick: (result: LoadResult) => number) => rounds.reduce((total, result) => total + pick(result), 0);
  return {
    name: `${name} (median of ${rounds.length})`,
    requests: sum((r) => r.requests),
    rps: median(rounds.map((r) => r.rps)),
    non2xx: sum((r) => r.non2xx),
    errors: sum((r) => r.errors),
    timeouts: sum((r) => r.timeouts),
    resets: sum((r) => r.resets),
    latencyMs: { p50: round(median(rounds.map((r) => r.latencyMs.p50)), 2), p99: round(median(rounds.map((r) => r.latencyMs.p99)), 2), max: Math.max(...rounds.map((r) => r.latencyMs.max)) },
    durationS: sum((r) => r.durationS),
  };
}

function round(value: number, digits: number): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}

function printReport(summary: Record<string, unknown> & { loads: Record<string, LoadResult> }, swaps: Array<{ to: string; ok: boolean; error?: string }>): void {
  const rows = Object.values(summary.loads).map((result) => [
    result.name,
    String(result.requests),
    Math.round(result.rps).toString(),
    String(result.non2xx),
    String(result.errors + result.timeouts),
    `${result.latencyMs.p50}`,
    `${result.latencyMs.p99}`,
    `${result.latencyMs.max}`,
  ]);
  const header = ['LOAD', 'REQUESTS', 'REQ/S', 'NON-2XX', 'ERRORS', 'P50 MS', 'P99 MS', 'MAX MS'];
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column]!.length)));
  const line = (cells: string[]) => cells.map((cell, column) => cell.padEnd(widths[column]!)).join('  ');
  const out = [line(header), ...rows.map(line), ''];
  const sequence = summary.sequence as ReturnType<typeof checkSequence>;
  out.push(`swaps: ${swaps.length}, failed ${swaps.filter((s) => !s.ok).length}${swaps.some((s) => !s.ok) ? ` (${swaps.find((s) => !s.ok)!.error})` : ''}; release at the end: ${String(summary.releaseAtEnd)}`);
  out.push(
    `sequence: ${sequence.checked} numbers from ${sequence.first} to ${sequence.last}: ${sequence.repeats} repeated, ${sequence.outOfOrder} out of order on a connection, ${sequence.unexplainedGaps} missing (besides ${sequence.cutOff} cut off when a load stopped)`,
  );
  out.push(`throughput vs the plain server: ${summary.rpsRatioVsPlainServer}x without upgrades, ${summary.rpsRatioDuringUpgradesVsPlainServer}x during them`);
  out.push(`p99 added during upgrades: ${summary.p99AddedMsDuringUpgrades} ms`);
  const targets = summary.targets as Record<string, boolean>;
  out.push(`targets: ${Object.entries(targets).map(([name, met]) => `${name} ${met ? 'met' : 'NOT met'}`).join(', ')}`);
  process.stdout.write(`${out.join('\n')}\n`);
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`bench:http failed: ${error instanceof Error ? error.stack : String(error)}\n`);
    process.exit(1);
  },
);
