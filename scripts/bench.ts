// Theseus benchmark: what a call through the kernel costs, and what a hot swap adds to the
// latency callers see. `npm run bench` prints tables; `-- --json` prints one JSON object on stdout
// (progress goes to stderr; use `npm run -s` so npm's own banner stays off stdout too); `-- --quick`
// is a short run for the CI smoke test.
//
// 1. Calls. The kernel's client calling the sequence service's trivial nextNumber, against three
//    baselines doing the same trivial work in one worker thread, all measured in this run:
//      raw port  a MessageChannel port: main posts [id, x], the worker replies [id, x + 1], main
//                resolves a promise kept in a Map by id (the minimal honest RPC);
//      comlink   comlink over its Node adapter;
//      piscina   a one-thread pool (minThreads = maxThreads = 1) running x => x + 1.
//    Pipelined: windows of many outstanding calls, in calls/s. Sequential: one call at a time,
//    round-trip p50 and p99 in µs. The machine is shared and noisy, so every transport is warmed
//    up, then measured in many short rounds whose order rotates; throughput is the median of the
//    rounds and latency percentiles pool the samples of all rounds.
//
// 2. Swaps under load. A service whose state is 1KB, 1MB or 100MB (scripts/bench/services) is
//    swapped between two versions of its code while closed-loop callers keep calling it. Added
//    latency = the worst latency of a call overlapping a swap (upgrade() called until it resolved)
//    minus the p99 of the steady load before the swaps. Every call must succeed, the replies'
//    counter must have no gap and no repeat, and a call made after upgrade() resolved must be
//    answered by the new code. Each swap alternates between the two paths the state can take,
//    in the same kernel under the same callers: 'direct' (the old worker hands it straight to
//    the new one, which was a warm spare) and 'through-kernel' (the path before both, kept as an
//    internal option to compare against; its figures are under `throughKernel` in the JSON).
//
// 3. The state codec (scripts/bench/state-codec.ts). Encode + decode of the 1MB and 100MB blobs
//    and the 1MB of small objects with the codec swaps used before issue 12 (v8.serialize) and the
//    one they use now (kernel/common/state-codec.ts), interleaved in this run, and the plain-data
//    check that runs before each snapshot.
//
// 4. Pooled throughput (scripts/bench/pool-throughput.ts). A CPU-bound call served by a pooled
//    service with one thread per core, against the same module in one stateful worker: calls/s of
//    each and their ratio.
//
// 4. Durability and overload (scripts/bench/durability.ts). The sequence service under 200
//    callers in durability 'reply' against no durability, with the writes and fsyncs per second;
//    and the swap pause with a backlog of about 200 queued async calls against none.
//
// 5. A warm spare's memory at idle (scripts/bench/spare-memory.ts): the RSS each idle spare adds to
//    a fresh process, against a bare Worker started with the same flags.
//
// The exit code is non-zero only when a call failed or went wrong, or the benchmark crashed; a
// missed performance target is reported, not fatal.

import { Worker, MessageChannel, type MessagePort } from 'node:worker_threads';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { availableParallelism, cpus } from 'node:os';
import type * as ComlinkApi from 'comlink';
import { Piscina } from 'piscina';
import { Kernel, type ClientOf, type LogRecord, type SwapReport } from '../kernel/index.ts';
import type { SwapPath } from '../kernel/main/kernel-context.ts';
import type sequenceService from '../services/sequence/0.1.0/sequence.ts';
import type blobService from './bench/services/blob-v1.ts';
import { benchBuild } from './bench/build-time.ts';
import { benchPoolThroughput, type PoolThroughputResult } from './bench/pool-throughput.ts';
import { benchBacklogSwap, benchDurability, type BacklogSwapResult, type DurabilityResult } from './bench/durability.ts';
import { benchStateCodec, type StateCodecRow } from './bench/state-codec.ts';
import { benchTenServices, type TenServicesPaths, type TenServicesResult } from './bench/ten-services.ts';
import { benchSpareMemory, type SpareMemoryResult } from './bench/spare-memory.ts';

// ---------------------------------------------------------------------------------------------
// Configuration

const args = new Set(process.argv.slice(2));
const jsonOutput = args.has('--json');
const quick = args.has('--quick');
for (const arg of args) {
  if (arg !== '--json' && arg !== '--quick') {
    process.stderr.write(`bench: unknown option ${arg} (expected --json and/or --quick)\n`);
    process.exit(2);
  }
}

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..');
const paths = {
  sequence: join(root, 'services', 'sequence', '0.1.0', 'sequence.ts'),
  blob: { v1: join(here, 'bench', 'services', 'blob-v1.ts'), v2: join(here, 'bench', 'services', 'blob-v2.ts') },
  keyed: { v1: join(here, 'bench', 'services', 'keyed-v1.ts'), v2: join(here, 'bench', 'services', 'keyed-v2.ts') },
  rawPortWorker: join(here, 'bench', 'raw-port-worker.mjs'),
  comlinkWorker: join(here, 'bench', 'comlink-worker.mjs'),
  piscinaTask: join(here, 'bench', 'piscina-task.mjs'),
  // comlink's package.json has no "exports"; its ESM build and Node adapter are plain files.
  comlink: join(root, 'node_modules', 'comlink', 'dist', 'esm', 'comlink.mjs'),
  comlinkNodeAdapter: join(root, 'node_modules', 'comlink', 'dist', 'esm', 'node-adapter.mjs'),
};

interface CallConfig {
  rounds: number;
  /** Calls per transport per round, pipelined. */
  pipelinedCalls: number;
  /** Outstanding calls per window. */
  window: number;
  /** Calls per transport per round, one at a time. */
  sequentialCalls: number;
  warmupPipelined: number;
  warmupSequential: number;
}

interface SwapScenario {
  shape: 'blob' | 'objects' | 'keyed';
  label: SizeLabel;
  bytes: number;
  /** Swaps on each path (so twice as many in all). */
  swaps: number;
}

interface SwapConfig {
  /** Closed-loop callers, each with one call in flight at a time. */
  concurrency: number;
  /** Load before the steady window, so the JIT has settled. */
  warmupMs: number;
  /** The window whose p99 is the baseline. */
  steadyMs: number;
  /** Load between two swaps, so one swap's aftermath does not count against the next. */
  gapMs: number;
  scenarios: SwapScenario[];
}

type SizeLabel = '1KB' | '1MB' | '10MB' | '100MB';
const sizes: Record<SizeLabel, number> = { '1KB': 1024, '1MB': 1024 * 1024, '10MB': 10 * 1024 * 1024, '100MB': 100 * 1024 * 1024 };
/** The keyed store's size: 1M entries of ~100 bytes in a full run; a tenth of it with --quick, which CI runs. */
const keyedLabel: SizeLabel = quick ? '10MB' : '100MB';

// Many short rounds rather than a few long ones: on a shared machine the speed drifts by 2x within
// seconds, and short interleaved rounds give every transport its share of fast and slow spells.
const callConfig: CallConfig = quick
  ? { rounds: 3, pipelinedCalls: 10_000, window: 1000, sequentialCalls: 700, warmupPipelined: 5_000, warmupSequential: 500 }
  : { rounds: 10, pipelinedCalls: 20_000, window: 1000, sequentialCalls: 2_000, warmupPipelined: 30_000, warmupSequential: 3_000 };

const swapConfig: SwapConfig = {
  concurrency: 50,
  warmupMs: quick ? 200 : 400,
  steadyMs: quick ? 400 : 1500,
  gapMs: quick ? 150 : 300,
  scenarios: [
    { shape: 'blob', label: '1KB', bytes: sizes['1KB'], swaps: quick ? 1 : 3 },
    { shape: 'blob', label: '1MB', bytes: sizes['1MB'], swaps: quick ? 2 : 3 },
    // Cloning 100MB twice per swap takes hundreds of ms: fewer swaps keep the run short.
    { shape: 'blob', label: '100MB', bytes: sizes['100MB'], swaps: quick ? 1 : 2 },
    // Many small objects stop at 1MB: at 100MB, walking and cloning them would take seconds per swap.
    { shape: 'objects', label: '1KB', bytes: sizes['1KB'], swaps: quick ? 1 : 3 },
    { shape: 'objects', label: '1MB', bytes: sizes['1MB'], swaps: quick ? 1 : 3 },
    // A keyed store of ~100-byte entries: pre-copied while the old worker serves on the direct
    // path; moved whole inside the pause through the kernel, as every state was before.
    { shape: 'keyed', label: keyedLabel, bytes: sizes[keyedLabel], swaps: 1 },
  ],
};

/** Bound on how long stopping the load may take; a call that never settles is a hang, not a result. */
const HANG_TIMEOUT_MS = 15_000;

const targets = {
  pipelinedRatioVsRawPort: 0.8,
  sequentialP50RatioVsRawPort: 1.2,
  swapAddedLatencyMs1MB: 2,
  keyedPauseMs: 10,
  failedCalls: 0,
  replyDurabilityRatio: 0.3,
  backlogPauseRatio: 2,
};

// ---------------------------------------------------------------------------------------------
// Small helpers

function progress(message: string): void {
  process.stderr.write(`bench: ${message}\n`);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolveSleep) => setTimeout(resolveSleep, ms));
}

/** Nearest-rank percentile of an ascending-sorted array; NaN when empty. */
function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil(p * sorted.length) - 1;
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank))]!;
}

function median(values: readonly number[]): number {
  return percentile(Float64Array.from(values).sort(), 0.5);
}

/** The largest of the numbers that are not NaN (a failed swap has no pause); NaN if none. */
function maxOf(values: readonly number[]): number {
  const known = values.filter((value) => !Number.isNaN(value));
  return known.length === 0 ? Number.NaN : Math.max(...known);
}

function round(value: number, digits: number): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function describeError(error: unknown): string {
  if (error instanceof Error) return `${(error as { code?: string }).code ?? error.name}: ${error.message}`;
  return String(error);
}

/** Kernel log lines are kept out of the output; warnings and errors are reported at the end. */
const kernelProblems: string[] = [];
function onKernelLog(record: LogRecord): void {
  if (record.level === 'warn' || record.level === 'error') {
    kernelProblems.push(`${record.level} [${record.service}@${record.release}] ${record.message}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Transports: four ways to make one trivial call to another thread

// kernelNoMetrics: the same kernel with its workers' call counters turned off
// (THESEUS_CALL_METRICS=0), to show what counting calls for /metrics costs.
type TransportName = 'kernel' | 'kernelNoMetrics' | 'rawPort' | 'comlink' | 'piscina';
const transportNames: readonly TransportName[] = ['kernel', 'rawPort', 'comlink', 'piscina'];

function byTransport<T>(value: (name: TransportName) => T): Record<TransportName, T> {
  return { kernel: value('kernel'), kernelNoMetrics: value('kernelNoMetrics'), rawPort: value('rawPort'), comlink: value('comlink'), piscina: value('piscina') };
}

interface Transport {
  name: TransportName;
  /** One round trip doing trivial work; resolves with x + 1 (or, for the kernel, the next number). */
  call(x: number): Promise<number>;
  close(): Promise<void>;
}

async function openKernel(): Promise<Transport> {
  const kernel = await Kernel.start({ release: '0.1.0', services: { sequence: { entry: paths.sequence } }, onLog: onKernelLog });
  const sequence = kernel.client<ClientOf<typeof sequenceService>>('sequence');
  return { name: 'kernel', call: () => sequence.nextNumber(), close: () => kernel.stop() };
}

/** The kernel with call metrics off: its worker reads the variable as it starts, and keeps it. */
async function openKernelWithoutMetrics(): Promise<Transport> {
  const before = process.env.THESEUS_CALL_METRICS;
  process.env.THESEUS_CALL_METRICS = '0';
  try {
    return { ...(await openKernel()), name: 'kernelNoMetrics' };
  } finally {
    if (before === undefined) delete process.env.THESEUS_CALL_METRICS;
    else process.env.THESEUS_CALL_METRICS = before;
  }
}

async function openRawPort(): Promise<Transport> {
  const { port1, port2 }: { port1: MessagePort; port2: MessagePort } = new MessageChannel();
  const worker = new Worker(paths.rawPortWorker, { workerData: { port: port2 }, transferList: [port2] });
  await new Promise<void>((ready, fail) => {
    worker.once('message', () => ready());
    worker.once('error', fail);
  });
  const pending = new Map<number, (value: number) => void>();
  let nextId = 1;
  port1.on('message', (reply: [number, number]) => {
    const settle = pending.get(reply[0]);
    pending.delete(reply[0]);
    settle?.(reply[1]);
  });
  return {
    name: 'rawPort',
    call(x) {
      const id = nextId++;
      port1.postMessage([id, x]);
      return new Promise((settle) => pending.set(id, settle));
    },
    async close() {
      port1.close();
      await worker.terminate();
    },
  };
}

async function openComlink(): Promise<Transport> {
  // Imported by path: the typings of the 'comlink' entry describe the same API, but TypeScript
  // finds none for the .mjs files themselves.
  const comlink = (await import(pathToFileURL(paths.comlink).href)) as typeof ComlinkApi;
  const adapter = (await import(pathToFileURL(paths.comlinkNodeAdapter).href)) as { default: (worker: Worker) => ComlinkApi.Endpoint };
  const nodeEndpoint = adapter.default;
  const worker = new Worker(paths.comlinkWorker);
  const remote = comlink.wrap<{ increment(x: number): number }>(nodeEndpoint(worker));
  return {
    name: 'comlink',
    call: (x) => remote.increment(x),
    async close() {
      remote[comlink.releaseProxy]();
      await worker.terminate();
    },
  };
}

async function openPiscina(): Promise<Transport> {
  const pool = new Piscina<number, number>({ filename: paths.piscinaTask, minThreads: 1, maxThreads: 1 });
  return { name: 'piscina', call: (x) => pool.run(x), close: () => pool.destroy() };
}

// ---------------------------------------------------------------------------------------------
// 1. Calls

/** Calls/s with `window` calls outstanding at a time. */
async function measurePipelined(transport: Transport, calls: number, window: number): Promise<number> {
  const batch = new Array<Promise<number>>(window);
  const started = performance.now();
  for (let done = 0; done < calls; done += window) {
    const size = Math.min(window, calls - done);
    batch.length = size;
    for (let i = 0; i < size; i++) batch[i] = transport.call(done + i);
    await Promise.all(batch);
  }
  return calls / ((performance.now() - started) / 1000);
}

/** Round-trip latencies in µs, one call at a time. */
async function measureSequential(transport: Transport, calls: number, into: number[]): Promise<void> {
  for (let i = 0; i < calls; i++) {
    const started = performance.now();
    await transport.call(i);
    into.push((performance.now() - started) * 1000);
  }
}

/** Fails loudly if a transport does not do the work it is timed on. */
async function checkTransport(transport: Transport): Promise<void> {
  if (transport.name === 'kernel' || transport.name === 'kernelNoMetrics') {
    const first = await transport.call(0);
    const second = await transport.call(0);
    if (second !== first + 1) throw new Error(`kernel sequence replied ${first} then ${second}`);
    return;
  }
  const reply = await transport.call(41);
  if (reply !== 42) throw new Error(`${transport.name} replied ${reply} to increment(41)`);
}

interface CallResults {
  pipelinedCallsPerSec: Record<TransportName, number>;
  sequentialP50Us: Record<TransportName, number>;
  sequentialP99Us: Record<TransportName, number>;
}

async function benchCalls(config: CallConfig): Promise<CallResults> {
  const transports: Transport[] = [];
  try {
    progress('calls: starting the kernel and the baselines');
    for (const open of [openKernel, openKernelWithoutMetrics, openRawPort, openComlink, openPiscina]) transports.push(await open());
    for (const transport of transports) {
      await checkTransport(transport);
      await measurePipelined(transport, config.warmupPipelined, config.window);
      await measureSequential(transport, config.warmupSequential, []);
    }
    const throughput = byTransport((): number[] => []);
    const latencies = byTransport((): number[] => []);
    for (let r = 0; r < config.rounds; r++) {
      progress(`calls: round ${r + 1} of ${config.rounds}`);
      // Rotating the order spreads slow spells of a noisy machine over all transports.
      const order = transports.map((_, i) => transports[(i + r) % transports.length]!);
      for (const transport of order) {
        throughput[transport.name].push(await measurePipelined(transport, config.pipelinedCalls, config.window));
        await measureSequential(transport, config.sequentialCalls, latencies[transport.name]);
      }
    }
    const sorted = byTransport((name) => Float64Array.from(latencies[name]).sort());
    return {
      pipelinedCallsPerSec: byTransport((name) => Math.round(median(throughput[name]))),
      sequentialP50Us: byTransport((name) => round(percentile(sorted[name], 0.5), 1)),
      sequentialP99Us: byTransport((name) => round(percentile(sorted[name], 0.99), 1)),
    };
  } finally {
    await Promise.allSettled(transports.map((transport) => transport.close()));
  }
}

// ---------------------------------------------------------------------------------------------
// 2. Swaps under load

type BlobClient = ClientOf<typeof blobService>;
type Code = 'v1' | 'v2';

/**
 * Closed-loop callers on the kernel's shared main-thread client (one port, as main-thread callers
 * get by default): each sends its next call as soon as the previous one is answered.
 */
class Load {
  /** Per completed call: start and end (performance.now() ms), counter value, code that answered. */
  readonly starts: number[] = [];
  readonly ends: number[] = [];
  readonly counters: number[] = [];
  readonly codes: Code[] = [];
  failed = 0;
  readonly failures: string[] = [];
  #running = true;
  #callers: Array<Promise<void>>;

  constructor(client: BlobClient, concurrency: number) {
    this.#callers = Array.from({ length: concurrency }, () => this.#caller(client));
  }

  async #caller(client: BlobClient): Promise<void> {
    while (this.#running) {
      const started = performance.now();
      try {
        const reply = await client.next();
        this.ends.push(performance.now());
        this.starts.push(started);
        this.codes.push(reply.startsWith('v2:') ? 'v2' : 'v1');
        this.counters.push(Number(reply.slice(3)));
      } catch (error) {
        this.failed++;
        if (this.failures.length < 5) this.failures.push(describeError(error));
        // A client that rejects at once (a stopped kernel) must not spin the microtask queue.
        await nextTurn();
      }
    }
  }

  async stop(): Promise<void> {
    this.#running = false;
    await withTimeout(Promise.all(this.#callers), HANG_TIMEOUT_MS, 'the calls in flight');
  }
}

interface SwapWindow {
  path: SwapPath;
  from: Code;
  to: Code;
  started: number;
  ended: number;
  report: SwapReport | null;
  error: string | null;
}

interface SwapDetail {
  path: SwapPath;
  shape: SwapScenario['shape'];
  size: SizeLabel;
  swap: number;
  outcome: string;
  upgradeMs: number;
  pauseMs: number;
  phaseMs: SwapReport['phaseMs'];
  callsDuringSwap: number;
  worstLatencyMs: number;
  /** When the worst call was sent and answered, in ms after upgrade() was called. */
  worstCallSpanMs: [sentAt: number, answeredAt: number];
  /** The worst call overlapping the pause alone (suspend to switch, placed by the report's phaseMs). */
  worstDuringPauseMs: number;
  addedLatencyMs: number;
}

/** One path's swaps in a scenario: max over its swaps. */
interface PathFigures {
  worstLatencyMs: number;
  worstDuringPauseMs: number;
  addedLatencyMs: number;
  pauseMs: number;
  details: SwapDetail[];
}

/** The direct path's figures at the top (as before there were two paths), the old path's under throughKernel. */
interface ScenarioResult extends PathFigures {
  scenario: SwapScenario;
  steadyCalls: number;
  steadyP99Ms: number;
  throughKernel: PathFigures;
  /** The correctness counts cover every call and swap of the scenario, both paths. */
  calls: number;
  failedCalls: number;
  failures: string[];
  sequenceErrors: number;
  staleReplies: number;
  swapErrors: string[];
  strayReplies: number;
}

function setStateEnv(scenario: SwapScenario): void {
  process.env.THESEUS_BENCH_STATE_BYTES = String(scenario.bytes);
  process.env.THESEUS_BENCH_STATE_SHAPE = scenario.shape;
}

async function runScenario(scenario: SwapScenario, config: SwapConfig, firstPath: SwapPath): Promise<ScenarioResult> {
  progress(`swaps: ${scenario.shape} ${scenario.label}, ${scenario.swaps} swap(s) under ${config.concurrency} callers`);
  // Workers copy the environment when they are created; only init() reads it, so setting it again
  // before each upgrade just keeps the two versions' environment the same.
  setStateEnv(scenario);
  const entries = scenario.shape === 'keyed' ? paths.keyed : paths.blob;
  const kernel = await Kernel.start({
    release: '1.0.0',
    services: { blob: { entry: entries.v1 } },
    onLog: onKernelLog,
    ...(scenario.shape === 'keyed'
      ? {
          // Filling a million entries takes seconds on a loaded machine.
          initTimeoutMs: 120_000,
          // A checkpoint encodes the whole store (about a second for a million entries): on a
          // timer it would set the steady p99 itself. Incremental checkpoints are not built.
          checkpointIntervalMs: 0,
          checkpointEveryChanges: 0,
        }
      : {}),
  });
  let load: Load | null = null;
  try {
    const client = kernel.client<BlobClient>('blob');
    const info = await client.info();
    if (info.shape !== scenario.shape || Math.abs(info.bytes - scenario.bytes) > 128) {
      throw new Error(`the service built a ${info.shape} state of ${info.bytes} bytes, not ${scenario.shape} of ${scenario.bytes}`);
    }

    // The kernel boots its spare once it has started: not inside the steady window.
    await withTimeout(kernel.sparesReady(), HANG_TIMEOUT_MS, 'a warm spare');
    load = new Load(client, config.concurrency);
    await sleep(config.warmupMs);
    const steadyFrom = performance.now();
    await sleep(config.steadyMs);
    const steadyTo = performance.now();

    const windows: SwapWindow[] = [];
    let code: Code = 'v1';
    // Each path gets scenario.swaps swaps, interleaved, so a noisy spell of the machine hits both.
    const otherPath: SwapPath = firstPath === 'direct' ? 'through-kernel' : 'direct';
    for (let i = 0; i < scenario.swaps * 2; i++) {
      const to: Code = code === 'v1' ? 'v2' : 'v1';
      const path = i % 2 === 0 ? firstPath : otherPath;
      setStateEnv(scenario);
      // The spare taken by the last direct swap is booted again in the gap, as it would be between two upgrades.
      if (path === 'direct') await withTimeout(kernel.sparesReady(), HANG_TIMEOUT_MS, 'a warm spare');
      // Every swap is an upgrade to a new release number; the code alternates between v1 and v2.
      const window: SwapWindow = { path, from: code, to, started: performance.now(), ended: 0, report: null, error: null };
      try {
        window.report = await kernel.upgrade({ release: `1.0.${i + 1}`, services: { blob: { entry: entries[to] } }, swapPath: path });
        code = to;
      } catch (error) {
        window.error = describeError(error);
      }
      window.ended = performance.now();
      windows.push(window);
      await sleep(config.gapMs);
    }
    await load.stop();
    return analyzeScenario(scenario, load, windows, steadyFrom, steadyTo, kernel.strayReplies);
  } finally {
    // On the way out of a failure the callers must stop before the kernel rejects their calls.
    await load?.stop().catch(() => undefined);
    await kernel.stop();
  }
}

function analyzeScenario(
  scenario: SwapScenario,
  load: Load,
  windows: readonly SwapWindow[],
  steadyFrom: number,
  steadyTo: number,
  strayReplies: number,
): ScenarioResult {
  const { starts, ends, counters, codes } = load;
  const steady: number[] = [];
  for (let i = 0; i < starts.length; i++) {
    if (starts[i]! >= steadyFrom && ends[i]! <= steadyTo) steady.push(ends[i]! - starts[i]!);
  }
  const steadyP99Ms = percentile(Float64Array.from(steady).sort(), 0.99);

  const details: SwapDetail[] = windows.map((window, index) => {
    // A call counts for a swap when it overlapped the swap at all.
    const worstIndex = worstOverlapping(load, window.started, window.ended);
    const worst = worstIndex < 0 ? 0 : ends[worstIndex]! - starts[worstIndex]!;
    let count = 0;
    for (let i = 0; i < starts.length; i++) if (starts[i]! < window.ended && ends[i]! > window.started) count++;
    const pauseIndex = window.report ? worstOverlapping(load, ...pauseWindow(window.started, window.report)) : -1;
    const pauseWorst = pauseIndex < 0 ? Number.NaN : ends[pauseIndex]! - starts[pauseIndex]!;
    const service = window.report?.services[0];
    return {
      path: window.path,
      shape: scenario.shape,
      size: scenario.label,
      swap: index + 1,
      outcome: window.report?.outcome ?? `failed: ${window.error}`,
      upgradeMs: round(window.ended - window.started, 2),
      pauseMs: round(service?.pauseMs ?? Number.NaN, 2),
      phaseMs: window.report?.phaseMs ?? {},
      callsDuringSwap: count,
      worstLatencyMs: round(worst, 3),
      worstCallSpanMs:
        worstIndex < 0 ? [Number.NaN, Number.NaN] : [round(starts[worstIndex]! - window.started, 2), round(ends[worstIndex]! - window.started, 2)],
      worstDuringPauseMs: round(pauseWorst, 3),
      // A swap that hurt no call more than the steady p99 did adds nothing.
      addedLatencyMs: round(Math.max(0, worst - steadyP99Ms), 3),
    };
  });
  const figures = (path: SwapPath): PathFigures => {
    const mine = details.filter((detail) => detail.path === path);
    return {
      worstLatencyMs: Math.max(0, ...mine.map((detail) => detail.worstLatencyMs)),
      worstDuringPauseMs: maxOf(mine.map((detail) => detail.worstDuringPauseMs)),
      addedLatencyMs: Math.max(0, ...mine.map((detail) => detail.addedLatencyMs)),
      pauseMs: maxOf(mine.map((detail) => detail.pauseMs)),
      details: mine,
    };
  };

  // Once upgrade() has resolved, every call made afterwards must be answered by the new code. A
  // call still unanswered when the next swap's pause began may rightly be answered by that swap's
  // new code, which (the code alternating) has the old one's tag: such a call proves nothing.
  let staleReplies = 0;
  for (const [index, window] of windows.entries()) {
    if (!window.report) continue;
    const next = windows[index + 1];
    const until = next === undefined ? Number.POSITIVE_INFINITY : next.report ? pauseWindow(next.started, next.report)[0] : next.started;
    let stale = 0;
    let first = -1;
    for (let i = 0; i < starts.length; i++) {
      if (starts[i]! > window.ended && ends[i]! < until && codes[i] !== window.to) {
        stale++;
        if (first < 0 || starts[i]! < starts[first]!) first = i;
      }
    }
    if (stale > 0) {
      // Where, so that it can be looked into: which swap, and when the first stale call ran.
      progress(
        `${stale} calls after swap ${index + 1} of ${scenario.shape} ${scenario.label} (${window.path}, to ${window.to}) were answered by ${codes[first]}: ` +
          `the first sent ${round(starts[first]! - window.ended, 2)} ms after upgrade() resolved, answered ${round(ends[first]! - window.ended, 2)} ms after`,
      );
    }
    staleReplies += stale;
  }

  // The counter starts at 0 and every successful call takes the next number: sorted, the replies
  // must be exactly 0, 1, 2, ... Each missing number is a call served whose reply was lost, each
  // repeated one a call served twice (or a state that went back).
  const sorted = Float64Array.from(counters).sort();
  let sequenceErrors = sorted.length > 0 ? sorted[0]! : 0;
  for (let i = 1; i < sorted.length; i++) {
    const step = sorted[i]! - sorted[i - 1]!;
    if (step !== 1) sequenceErrors += step === 0 ? 1 : step - 1;
  }

  return {
    scenario,
    steadyCalls: steady.length,
    steadyP99Ms: round(steadyP99Ms, 3),
    ...figures('direct'),
    throughKernel: figures('through-kernel'),
    calls: starts.length,
    failedCalls: load.failed,
    failures: load.failures,
    sequenceErrors,
    staleReplies,
    swapErrors: windows.flatMap((window) => (window.error ? [window.error] : [])),
    strayReplies,
  };
}

/**
 * Where the pause sits inside a swap: its phases run back to back from (about) the moment upgrade()
 * was called, and the pause is suspend + migrate + switch. The rest of a swap (check, prepare,
 * commit) happens while the old or the new worker serves.
 */
function pauseWindow(started: number, report: SwapReport): [from: number, to: number] {
  const { check = 0, prepare = 0, suspend = 0, migrate = 0, switch: switching = 0 } = report.phaseMs;
  const from = started + check + prepare;
  return [from, from + suspend + migrate + switching];
}

/** Index of the longest call that was in flight at some point between `from` and `to`; -1 if none. */
function worstOverlapping(load: Load, from: number, to: number): number {
  const { starts, ends } = load;
  let worst = -1;
  let index = -1;
  for (let i = 0; i < starts.length; i++) {
    // Sent before the window closed and answered after it opened.
    if (starts[i]! < to && ends[i]! > from && ends[i]! - starts[i]! > worst) {
      worst = ends[i]! - starts[i]!;
      index = i;
    }
  }
  return index;
}

async function benchSwaps(config: SwapConfig): Promise<ScenarioResult[]> {
  const results: ScenarioResult[] = [];
  // The first swap of a kernel pays for what is done once (bundling the other code, a cold JIT):
  // the scenarios take turns at which path goes first.
  for (const [index, scenario] of config.scenarios.entries()) results.push(await runScenario(scenario, config, index % 2 === 0 ? 'direct' : 'through-kernel'));
  return results;
}

// ---------------------------------------------------------------------------------------------
// Report

interface TargetCheck {
  name: string;
  target: string;
  measured: number;
  met: boolean;
}

interface BenchResult {
  quick: boolean;
  node: string;
  cpus: number;
  cpuModel: string;
  pipelinedCallsPerSec: Record<TransportName, number>;
  sequentialP50Us: Record<TransportName, number>;
  sequentialP99Us: Record<TransportName, number>;
  pipelinedRatioVsRawPort: number;
  /** The same ratio with the workers' call counters off: what /metrics costs a call. */
  pipelinedRatioVsRawPortWithoutMetrics: number;
  pipelinedRatioVsComlink: number;
  pipelinedRatioVsPiscina: number;
  sequentialP50RatioVsRawPort: number;
  swapAddedLatencyMs: Partial<Record<SizeLabel, number>>;
  swapAddedLatencyMsObjects: Partial<Record<SizeLabel, number>>;
  swapPauseMs: Partial<Record<SizeLabel, number>>;
  swapPauseMsObjects: Partial<Record<SizeLabel, number>>;
  swapSteadyP99Ms: Partial<Record<SizeLabel, number>>;
  swapSteadyP99MsObjects: Partial<Record<SizeLabel, number>>;
  swapWorstDuringPauseMs: Partial<Record<SizeLabel, number>>;
  swapWorstDuringPauseMsObjects: Partial<Record<SizeLabel, number>>;
  /** A keyed store of ~100-byte entries (100MB in a full run, 10MB with --quick): pre-copied on the direct path, whole through the kernel. */
  keyedSwapPauseMs: Partial<Record<SizeLabel, number>>;
  keyedSwapAddedLatencyMs: Partial<Record<SizeLabel, number>>;
  swapFailedCalls: number;
  swapSequenceErrors: number;
  swapStaleReplies: number;
  swapStrayReplies: number;
  swapErrors: string[];
  swapCalls: number;
  swapDetails: SwapDetail[];
  targets: TargetCheck[];
  allTargetsMet: boolean;
  kernelWarnings: string[];
  /** `kernel release` time in ms, keyed by the number of services built. */
  buildMs: Record<string, number>;
  /** A CPU-bound call on a pool of one thread per core against one stateful worker. */
  poolThroughput: PoolThroughputResult;
  poolThroughputRatioVsOneWorker: number;
  durability: DurabilityResult;
  /** The swap pause with about 200 async calls queued, with the same callers and none queued, and idle (medians). */
  swapPauseMsBacklog: number;
  swapPauseMsNoBacklog: number;
  swapPauseMsIdle: number;
  backlogSwap: BacklogSwapResult;
  /** Encode + decode (ms, median) with the old codec and the new, and the plain-data check, per state. */
  stateCodec: StateCodecRow[];
  /** Ten idle 1 KB services swapped as one step: end to end and each pause (medians over the swaps). */
  tenServicesSwapMs: number;
  tenServicesPauseMs: number;
  tenServices: TenServicesResult;
  /** The same swap figures on the path through the kernel, measured in the same kernels, interleaved. */
  throughKernel: PathKeys;
  /** Ten services swapped as one step on the direct path with ten spares (spareWorkers: 10): no new worker boots from nothing. */
  tenServicesSwapMsTenSpares: number;
  tenServicesPauseMsTenSpares: number;
  tenServicesTenSpares: TenServicesResult;
  /** RSS one idle warm spare costs, against a bare Worker started with the same flags (MB each). */
  spareIdleRssMb: number;
  bareWorkerIdleRssMb: number;
  spareMemory: SpareMemoryResult;
  durationMs: number;
}

/** The keys a swap path has (the direct path's at the top of BenchResult). */
type PathKeys = Pick<
  BenchResult,
  | 'swapAddedLatencyMs'
  | 'swapAddedLatencyMsObjects'
  | 'swapPauseMs'
  | 'swapPauseMsObjects'
  | 'swapSteadyP99Ms'
  | 'swapSteadyP99MsObjects'
  | 'swapWorstDuringPauseMs'
  | 'swapWorstDuringPauseMsObjects'
  | 'keyedSwapPauseMs'
  | 'keyedSwapAddedLatencyMs'
  | 'swapDetails'
  | 'tenServicesSwapMs'
  | 'tenServicesPauseMs'
  | 'tenServices'
>;

/** One path's keys, from each scenario's figures for that path. */
function pathKeys(swaps: readonly ScenarioResult[], pick: (result: ScenarioResult) => PathFigures, tenServices: TenServicesResult): PathKeys {
  const bySize = (shape: SwapScenario['shape'], value: (figures: PathFigures, result: ScenarioResult) => number) =>
    Object.fromEntries(swaps.filter((result) => result.scenario.shape === shape).map((result) => [result.scenario.label, value(pick(result), result)]));
  return {
    swapAddedLatencyMs: bySize('blob', (f) => f.addedLatencyMs),
    swapAddedLatencyMsObjects: bySize('objects', (f) => f.addedLatencyMs),
    swapPauseMs: bySize('blob', (f) => f.pauseMs),
    swapPauseMsObjects: bySize('objects', (f) => f.pauseMs),
    // One kernel per scenario serves both paths: the steady load before the swaps is the same.
    swapSteadyP99Ms: bySize('blob', (_, r) => r.steadyP99Ms),
    swapSteadyP99MsObjects: bySize('objects', (_, r) => r.steadyP99Ms),
    swapWorstDuringPauseMs: bySize('blob', (f) => f.worstDuringPauseMs),
    swapWorstDuringPauseMsObjects: bySize('objects', (f) => f.worstDuringPauseMs),
    keyedSwapPauseMs: bySize('keyed', (f) => f.pauseMs),
    keyedSwapAddedLatencyMs: bySize('keyed', (f) => f.addedLatencyMs),
    swapDetails: swaps.flatMap((r) => pick(r).details),
    tenServicesSwapMs: tenServices.endToEndMs,
    tenServicesPauseMs: tenServices.pauseMs,
    tenServices,
  };
}

function summarize(
  calls: CallResults,
  swaps: ScenarioResult[],
  buildMs: Record<string, number>,
  pool: PoolThroughputResult,
  durability: DurabilityResult,
  backlogSwap: BacklogSwapResult,
  stateCodec: StateCodecRow[],
  tenServices: TenServicesPaths,
  tenWithTenSpares: TenServicesResult,
  spareMemory: SpareMemoryResult,
  durationMs: number,
): BenchResult {
  const { pipelinedCallsPerSec: pipelined, sequentialP50Us: p50 } = calls;
  const { throughKernel: tenThroughKernel, ...tenDirect } = tenServices;
  const sum = (pick: (result: ScenarioResult) => number) => swaps.reduce((total, result) => total + pick(result), 0);

  const result: Omit<BenchResult, 'targets' | 'allTargetsMet'> = {
    quick,
    node: process.version,
    cpus: availableParallelism(),
    cpuModel: cpus()[0]?.model ?? 'unknown',
    pipelinedCallsPerSec: pipelined,
    sequentialP50Us: p50,
    sequentialP99Us: calls.sequentialP99Us,
    pipelinedRatioVsRawPort: round(pipelined.kernel / pipelined.rawPort, 3),
    pipelinedRatioVsRawPortWithoutMetrics: round(pipelined.kernelNoMetrics / pipelined.rawPort, 3),
    pipelinedRatioVsComlink: round(pipelined.kernel / pipelined.comlink, 3),
    pipelinedRatioVsPiscina: round(pipelined.kernel / pipelined.piscina, 3),
    sequentialP50RatioVsRawPort: round(p50.kernel / p50.rawPort, 3),
    ...pathKeys(swaps, (r) => r, tenDirect),
    throughKernel: pathKeys(swaps, (r) => r.throughKernel, tenThroughKernel),
    tenServicesSwapMsTenSpares: tenWithTenSpares.endToEndMs,
    tenServicesPauseMsTenSpares: tenWithTenSpares.pauseMs,
    tenServicesTenSpares: tenWithTenSpares,
    spareIdleRssMb: spareMemory.spareIdleRssMb,
    bareWorkerIdleRssMb: spareMemory.bareWorkerIdleRssMb,
    spareMemory,
    swapFailedCalls: sum((r) => r.failedCalls),
    swapSequenceErrors: sum((r) => r.sequenceErrors),
    swapStaleReplies: sum((r) => r.staleReplies),
    swapStrayReplies: sum((r) => r.strayReplies),
    swapErrors: swaps.flatMap((r) => r.swapErrors),
    swapCalls: sum((r) => r.calls),
    kernelWarnings: kernelProblems.slice(0, 20),
    buildMs,
    poolThroughput: pool,
    poolThroughputRatioVsOneWorker: pool.ratio,
    durability,
    swapPauseMsBacklog: backlogSwap.pauseMsBacklog,
    swapPauseMsNoBacklog: backlogSwap.pauseMsNoBacklog,
    swapPauseMsIdle: backlogSwap.pauseMsIdle,
    backlogSwap,
    stateCodec,
    durationMs: Math.round(durationMs),
  };
  const added1MB = result.swapAddedLatencyMs['1MB'] ?? Number.NaN;
  const keyedPause = result.keyedSwapPauseMs[keyedLabel] ?? Number.NaN;
  const checks: TargetCheck[] = [
    {
      name: 'pipelined calls/s vs raw port',
      target: `>= ${targets.pipelinedRatioVsRawPort}x`,
      measured: result.pipelinedRatioVsRawPort,
      met: result.pipelinedRatioVsRawPort >= targets.pipelinedRatioVsRawPort,
    },
    {
      name: 'sequential p50 vs raw port',
      target: `<= ${targets.sequentialP50RatioVsRawPort}x`,
      measured: result.sequentialP50RatioVsRawPort,
      met: result.sequentialP50RatioVsRawPort <= targets.sequentialP50RatioVsRawPort,
    },
    {
      name: 'swap added latency, 1MB blob (ms)',
      target: `<= ${targets.swapAddedLatencyMs1MB}`,
      measured: added1MB,
      met: added1MB <= targets.swapAddedLatencyMs1MB,
    },
    {
      name: `swap pause, ${keyedLabel} keyed store pre-copied (ms)`,
      target: `<= ${targets.keyedPauseMs}`,
      measured: keyedPause,
      met: keyedPause <= targets.keyedPauseMs,
    },
    {
      name: 'failed calls during swaps',
      target: `= ${targets.failedCalls}`,
      measured: result.swapFailedCalls,
      met: result.swapFailedCalls === targets.failedCalls,
    },
    {
      name: "durability 'reply' calls/s vs none (200 callers)",
      target: `>= ${targets.replyDurabilityRatio}x`,
      measured: durability.ratio,
      met: durability.ratio >= targets.replyDurabilityRatio,
    },
    {
      name: 'swap pause with a 200-call backlog vs none (same callers)',
      target: `<= ${targets.backlogPauseRatio}x`,
      measured: backlogSwap.ratio,
      met: backlogSwap.ratio <= targets.backlogPauseRatio,
    },
  ];
  return { ...result, targets: checks, allTargetsMet: checks.every((check) => check.met) };
}

function table(header: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const widths = header.map((cell, column) => Math.max(cell.length, ...rows.map((row) => row[column]?.length ?? 0)));
  const line = (cells: readonly string[]) =>
    cells.map((cell, column) => (column === 0 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!))).join(' | ');
  return [line(header), widths.map((width) => '-'.repeat(width)).join('-|-'), ...rows.map(line)].join('\n');
}

function formatNumber(value: number | undefined, digits = 0): string {
  if (value === undefined || Number.isNaN(value)) return '-';
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function printTables(result: BenchResult, swaps: readonly ScenarioResult[]): void {
  const out: string[] = [];
  out.push(`Theseus bench${result.quick ? ' (--quick)' : ''}: node ${result.node}, ${result.cpus} CPU(s), ${result.cpuModel}`, '');

  const per = (values: Record<TransportName, number>, digits: number) => transportNames.map((name) => formatNumber(values[name], digits));
  out.push(
    table(
      ['metric', 'kernel', 'raw port', 'comlink', 'piscina', 'ratio (kernel / raw port)'],
      [
        ['pipelined calls/s', ...per(result.pipelinedCallsPerSec, 0), `${formatNumber(result.pipelinedRatioVsRawPort, 2)}x`],
        ['sequential p50 (µs)', ...per(result.sequentialP50Us, 1), `${formatNumber(result.sequentialP50RatioVsRawPort, 2)}x`],
        ['sequential p99 (µs)', ...per(result.sequentialP99Us, 1), `${formatNumber(result.sequentialP99Us.kernel / result.sequentialP99Us.rawPort, 2)}x`],
      ],
    ),
  );
  out.push(
    `kernel pipelined vs comlink: ${formatNumber(result.pipelinedRatioVsComlink, 2)}x, vs piscina: ${formatNumber(result.pipelinedRatioVsPiscina, 2)}x`,
    `call metrics (the workers' counters behind /metrics): pipelined vs raw port ${formatNumber(result.pipelinedRatioVsRawPort, 2)}x with them, ${formatNumber(result.pipelinedRatioVsRawPortWithoutMetrics, 2)}x without (${formatNumber(result.pipelinedCallsPerSec.kernel, 0)} and ${formatNumber(result.pipelinedCallsPerSec.kernelNoMetrics, 0)} calls/s)`,
    '',
  );

  out.push(`Swaps under load (${swapConfig.concurrency} closed-loop callers; added = worst call overlapping a swap - steady p99), each path in turn in the same kernel:`);
  const pathRow = (r: ScenarioResult, path: string, figures: PathFigures) => [
    `${r.scenario.label} ${r.scenario.shape}`,
    path,
    String(figures.details.length),
    formatNumber(r.steadyP99Ms, 3),
    formatNumber(figures.worstLatencyMs, 2),
    formatNumber(figures.addedLatencyMs, 2),
    formatNumber(figures.pauseMs, 2),
    formatNumber(figures.worstDuringPauseMs, 2),
    formatNumber(Math.max(...figures.details.map((d) => d.upgradeMs)), 0),
  ];
  out.push(
    table(
      ['state', 'path', 'swaps', 'steady p99 (ms)', 'worst in swap (ms)', 'added (ms)', 'pause (ms)', 'worst in pause (ms)', 'upgrade() (ms)'],
      swaps.flatMap((r) => [pathRow(r, 'direct + spare', r), pathRow(r, 'through kernel', r.throughKernel)]),
    ),
  );
  out.push(
    '(max over each path\'s swaps. pause: old code takes its last message to new code listening, from the swap report. worst in pause: worst call',
    ' overlapping the pause alone; the rest of "worst in swap" comes from check/prepare/commit, while a worker serves.',
    ' direct + spare: the old worker hands its state to the new one, a warm spare; through kernel: the path before both, fresh workers)',
    '',
  );
  out.push(
    `Correctness: ${result.swapCalls.toLocaleString('en-US')} calls during the swap runs; failed ${result.swapFailedCalls}, ` +
      `counter gaps/repeats ${result.swapSequenceErrors}, answered by old code after upgrade() ${result.swapStaleReplies}, ` +
      `stray replies ${result.swapStrayReplies}, failed swaps ${result.swapErrors.length}`,
    '',
  );

  out.push('State codec, encode + decode (ms, median of each state\'s rounds; old = v8.serialize/deserialize, new = kernel/common/state-codec.ts):');
  out.push(
    table(
      ['state', 'old encode', 'old decode', 'old total', 'new encode', 'new decode', 'new total', 'new / old', 'plain-data check'],
      result.stateCodec.map((row) => [
        row.state,
        formatNumber(row.old.encodeMs, 2),
        formatNumber(row.old.decodeMs, 2),
        formatNumber(row.old.totalMs, 2),
        formatNumber(row.new.encodeMs, 2),
        formatNumber(row.new.decodeMs, 2),
        formatNumber(row.new.totalMs, 2),
        `${formatNumber(row.ratio, 2)}x`,
        formatNumber(row.checkMs, 2),
      ]),
    ),
    '(the new decode gives each ArrayBuffer memory of its own; the old left each typed array inside the snapshot\'s buffer)',
    '',
  );
  out.push(
    table(
      ['services in the release', ...Object.keys(result.buildMs)],
      [['kernel release (ms)', ...Object.values(result.buildMs).map((ms) => formatNumber(ms, 0))]],
    ),
    '',
  );
  const pool = result.poolThroughput;
  out.push(`Pooled throughput: fib(${pool.fibN}) per call, ${pool.poolSize * 2} closed-loop callers, median of ${pool.rounds} rounds each:`);
  out.push(
    table(
      ['served by', 'calls/s'],
      [
        [`a pool of ${pool.poolSize} thread(s) (one per core)`, formatNumber(pool.pooledCallsPerSec, 0)],
        ['one stateful worker', formatNumber(pool.oneWorkerCallsPerSec, 0)],
        ['ratio (pool / one worker)', `${formatNumber(pool.ratio, 2)}x`],
      ],
    ),
    `(${pool.calls.toLocaleString('en-US')} calls, failed ${pool.failedCalls}; the process used ${formatNumber(pool.pooledCoresUsed, 2)} cores during the pooled rounds)`,
    '',
  );
  const durability = result.durability;
  out.push(`Durability: the sequence service, ${durability.callers} closed-loop callers, median of ${durability.rounds} rounds each:`);
  out.push(
    table(
      ['durability', 'calls/s', 'state writes/s', 'fsyncs/s', 'calls per write'],
      [
        ["'reply' (nothing answered is lost)", formatNumber(durability.replyCallsPerSec, 0), formatNumber(durability.writesPerSec, 0), formatNumber(durability.fsyncsPerSec, 0), formatNumber(durability.callsPerWrite, 1)],
        ['none', formatNumber(durability.noneCallsPerSec, 0), '0', '0', '-'],
        ['ratio', `${formatNumber(durability.ratio, 2)}x`, '', '', ''],
      ],
    ),
    '',
  );
  const backlog = result.backlogSwap;
  out.push(`Swap pause with a backlog: median of ${backlog.swaps} swaps each:`);
  out.push(
    table(
      ['load', 'pause (ms)', 'of it finishing the running handler (ms)', 'messages carried over'],
      [
        ['no callers', formatNumber(backlog.pauseMsIdle, 3), '0', '0'],
        [`${backlog.callers} callers, handler that does not wait (no backlog)`, formatNumber(backlog.pauseMsNoBacklog, 3), '-', '-'],
        [`${backlog.callers} callers, handler that awaits ~1 ms (backlog)`, formatNumber(backlog.pauseMsBacklog, 3), formatNumber(backlog.drainMs, 3), formatNumber(backlog.carried, 0)],
        ['ratio (backlog / no backlog)', `${formatNumber(backlog.ratio, 2)}x`, '', ''],
      ],
    ),
    '(the callers share the kernel\'s main thread with the swap\'s control messages: their load, not the backlog, is what lengthens the loaded pauses)',
    '',
  );
  const ten = result.tenServices;
  const tenOld = result.throughKernel.tenServices;
  out.push(
    `Ten idle 1 KB services swapped as one step, ${ten.swaps} swaps of each path in turn (medians):`,
    `  direct + spare: ${formatNumber(ten.endToEndMs, 1)} ms end to end, each pause ${formatNumber(ten.pauseMs, 2)} ms (worst ${formatNumber(ten.pauseMaxMs, 2)} ms)`,
    `  through kernel: ${formatNumber(tenOld.endToEndMs, 1)} ms end to end, each pause ${formatNumber(tenOld.pauseMs, 2)} ms (worst ${formatNumber(tenOld.pauseMaxMs, 2)} ms)`,
    `  direct + 10 spares (spareWorkers: 10): ${formatNumber(result.tenServicesSwapMsTenSpares, 1)} ms end to end, each pause ${formatNumber(result.tenServicesPauseMsTenSpares, 2)} ms (worst ${formatNumber(result.tenServicesTenSpares.pauseMaxMs, 2)} ms)`,
    '',
  );
  const memory = result.spareMemory;
  out.push(
    `A warm spare at idle: ${formatNumber(memory.spareIdleRssMb, 1)} MB of RSS each, against ${formatNumber(memory.bareWorkerIdleRssMb, 1)} MB for a bare Worker with the same flags (${memory.workers} of each, each kind in a fresh process).`,
    '',
  );
  out.push(
    table(
      ['target', 'wanted', 'measured', 'met'],
      result.targets.map((check) => [check.name, check.target, formatNumber(check.measured, Number.isInteger(check.measured) ? 0 : 2), check.met ? 'yes' : 'NO']),
    ),
  );
  if (result.kernelWarnings.length > 0) out.push('', 'Kernel warnings and errors:', ...result.kernelWarnings.map((line) => `  ${line}`));
  out.push('', `Took ${(result.durationMs / 1000).toFixed(1)} s.`);
  process.stdout.write(`${out.join('\n')}\n`);
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  const started = performance.now();
  const calls = await benchCalls(callConfig);
  const swaps = await benchSwaps(swapConfig);
  progress('build time against the number of services');
  const buildMs = await benchBuild([1, 10, 100]);
  progress('pooled CPU-bound calls against one worker');
  const pool = await benchPoolThroughput({ quick, onLog: onKernelLog });
  progress("durability 'reply' against none, and the swap pause with a backlog");
  const durability = await benchDurability({ quick, onLog: onKernelLog });
  const backlogSwap = await benchBacklogSwap({ quick, onLog: onKernelLog });
  progress('state codec: the old against the new, on the same states');
  const stateCodec = benchStateCodec({ quick });
  progress('ten idle services swapped as one step');
  const tenServices = await benchTenServices({ swaps: quick ? 2 : 6, onLog: onKernelLog });
  // A spare for every service of the swap: what ten services cost when none boots from nothing.
  const { throughKernel: _, ...tenWithTenSpares } = await benchTenServices({ swaps: quick ? 2 : 6, spareWorkers: 10, directOnly: true, onLog: onKernelLog });
  progress('what a warm spare costs at idle, against a bare Worker');
  const spareMemory = await benchSpareMemory({ quick });
  const result = summarize(calls, swaps, buildMs, pool, durability, backlogSwap, stateCodec, tenServices, tenWithTenSpares, spareMemory, performance.now() - started);
  if (jsonOutput) process.stdout.write(`${JSON.stringify(result)}\n`);
  else printTables(result, swaps);

  for (const swap of swaps) {
    for (const failure of swap.failures) progress(`call failed (${swap.scenario.shape} ${swap.scenario.label}): ${failure}`);
    for (const error of swap.swapErrors) progress(`swap failed (${swap.scenario.shape} ${swap.scenario.label}): ${error}`);
  }
  if (pool.failedCalls > 0) progress(`${pool.failedCalls} pooled-throughput calls failed or gave a wrong answer`);
  if (durability.failedCalls + backlogSwap.failedCalls > 0) progress(`${durability.failedCalls + backlogSwap.failedCalls} durability or backlog calls failed`);
  const wentWrong =
    pool.failedCalls +
    durability.failedCalls +
    backlogSwap.failedCalls +
    result.swapFailedCalls + result.swapSequenceErrors + result.swapStaleReplies + result.swapStrayReplies + result.swapErrors.length;
  return wentWrong === 0 ? 0 : 1;
}

try {
  process.exitCode = await main();
} catch (error) {
  process.stderr.write(`bench: crashed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exitCode = 1;
}
