// Shared test helpers: paths to the example and fixture services, and the load generator that
// witnesses the kernel's invariants (every call answered once, in order per caller, consecutive).

import { execFile, type ExecFileOptions } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Kernel } from '../kernel/index.ts';
import type { LogRecord } from '../kernel/common/protocol.ts';

export const root = fileURLToPath(new URL('..', import.meta.url));

export function sequenceEntry(version: '0.1.0' | '0.2.0' | '0.3.0'): string {
  return `${root}services/sequence/${version}/sequence.ts`;
}

export function fixture(name: string): string {
  return `${root}test/fixtures/services/${name}.ts`;
}

export function sequenceRelease(version: '0.1.0' | '0.2.0' | '0.3.0') {
  return { release: version, services: { sequence: { entry: sequenceEntry(version) } } };
}

/** Collects log lines instead of printing them. */
export function logCollector(): { records: LogRecord[]; onLog(record: LogRecord): void } {
  const records: LogRecord[] = [];
  return { records, onLog: (record) => records.push(record) };
}

/** 0.1.0 replies with a number, 0.2.0 and 0.3.0 with "The next number is N". */
export function parseSequenceReply(reply: unknown): number {
  if (typeof reply === 'number') return reply;
  const match = /^The next number is (-?\d+)$/.exec(String(reply));
  if (!match) throw new Error(`unexpected reply ${JSON.stringify(reply)}`);
  return Number(match[1]);
}

export interface SequenceApi {
  nextNumber(): Promise<number | string>;
  incrementNumber(delta: number): void;
}

export interface LoadResult {
  /** Every number handed out, per caller, in the order the caller received them. */
  perCaller: number[][];
  failures: unknown[];
  calls: number;
}

/**
 * Starts `callers` concurrent callers spread over `ports` dedicated clients. Each caller keeps
 * `inFlight` calls outstanding (issued back to back on the same port, so their replies must come
 * back in issue order) until stop() is called.
 */
export function startSequenceLoad(kernel: Kernel, options: { callers: number; ports: number; inFlight: number }) {
  const clients = Array.from({ length: options.ports }, () => kernel.client<SequenceApi>('sequence', { dedicated: true }));
  const perCaller: number[][] = Array.from({ length: options.callers }, () => []);
  const failures: unknown[] = [];
  let stopping = false;
  let calls = 0;
  const loops = perCaller.map(async (record, index) => {
    const client = clients[index % clients.length]!;
    while (!stopping) {
      const batch: Array<Promise<number | string>> = [];
      for (let i = 0; i < options.inFlight; i++) batch.push(client.nextNumber());
      calls += batch.length;
      const settled = await Promise.allSettled(batch);
      for (const result of settled) {
        if (result.status === 'fulfilled') record.push(parseSequenceReply(result.value));
        else failures.push(result.reason);
      }
      // A failure ends the load: the invariant is already broken, and a caller whose calls fail
      // at once would otherwise spin.
      if (failures.length > 0) stopping = true;
    }
  });
  return {
    /** Calls answered so far. */
    answered: () => perCaller.reduce((sum, record) => sum + record.length, 0),
    /** Calls that failed so far (the first one ends the load). */
    failures: () => failures,
    async stop(): Promise<LoadResult> {
      stopping = true;
      await Promise.all(loops);
      return { perCaller, failures, calls };
    },
  };
}

/** How long a wait in a test may take before it fails: generous, for a shared 2-core machine. */
export const WAIT_TIMEOUT_MS = 30_000;

/**
 * Polls `check` until it returns true. Fails, naming `what` it waited for, once `timeoutMs` has
 * passed; a `check` that throws ends the wait at once with its error (a load whose calls fail will
 * never reach its target, so it should say so rather than spin until the deadline).
 */
export async function waitUntil(what: string, check: () => boolean | Promise<boolean>, options: { timeoutMs?: number; intervalMs?: number } = {}): Promise<void> {
  const timeoutMs = options.timeoutMs ?? WAIT_TIMEOUT_MS;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() >= deadline) throw new Error(`gave up after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 5));
  }
}

/**
 * Waits until at least `count` more calls have been answered, so swaps happen under real load.
 * Fails with the first failed call as soon as one fails (the load stops there), or at the deadline.
 */
export async function waitForCalls(load: { answered(): number; failures(): unknown[] }, count: number): Promise<void> {
  const target = load.answered() + count;
  await waitUntil(`${count} more answered calls (${load.answered()} of ${target} so far)`, () => {
    const failed = load.failures();
    if (failed.length > 0) throw new Error(`the load stopped: ${failed.length} calls failed, first: ${String(failed[0])}`, { cause: failed[0] });
    return load.answered() >= target;
  });
}

/** Checks the invariants; returns the sorted list of numbers for further checks. */
export function checkSequenceInvariants(result: LoadResult): { sorted: number[]; problems: string[] } {
  const problems: string[] = [];
  if (result.failures.length > 0) problems.push(`${result.failures.length} calls failed, first: ${String(result.failures[0])}`);
  const all = result.perCaller.flat();
  if (all.length !== result.calls) problems.push(`${result.calls} calls made but ${all.length} answered`);
  result.perCaller.forEach((record, caller) => {
    for (let i = 1; i < record.length; i++) {
      if (record[i]! <= record[i - 1]!) {
        problems.push(`caller ${caller} got ${record[i]} after ${record[i - 1]} (out of order)`);
        break;
      }
    }
  });
  const sorted = [...all].sort((a, b) => a - b);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i] === sorted[i - 1]) {
      problems.push(`number ${sorted[i]} handed out twice`);
      break;
    }
  }
  return { sorted, problems };
}

/** Differences between consecutive numbers, run-length encoded: "1x500, 3x20". */
export function stepRuns(sorted: number[]): Array<{ step: number; count: number }> {
  const runs: Array<{ step: number; count: number }> = [];
  for (let i = 1; i < sorted.length; i++) {
    const step = sorted[i]! - sorted[i - 1]!;
    const last = runs.at(-1);
    if (last && last.step === step) last.count++;
    else runs.push({ step, count: 1 });
  }
  return runs;
}

/** OS threads of this process; a worker that really ended no longer has one. */
export async function osThreadCount(): Promise<number> {
  const { readdir } = await import('node:fs/promises');
  return (await readdir('/proc/self/task')).length;
}

/**
 * Whether a process has exited: it is gone, or a zombie its parent has not reaped yet (a detached
 * kernel's parent is the machine's init, which may take a while). Linux's /proc.
 */
export async function hasExited(pid: number): Promise<boolean> {
  const { readFile } = await import('node:fs/promises');
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => null);
  return stat === null || /\) [ZX] /.test(stat);
}

/** SIGKILLs a process (no chance to clean up after itself) and waits until it is gone. */
export async function killAndWait(pid: number): Promise<void> {
  process.kill(pid, 'SIGKILL');
  const gone = () => {
    try {
      process.kill(pid, 0);
      return false;
    } catch {
      return true;
    }
  };
  await waitUntil(`process ${pid} to be gone after SIGKILL`, gone, { intervalMs: 20 });
}

/**
 * The result of `kernel upgrade|downgrade --json`: its stdout is one `{"phase": ...}` line per
 * phase as it ended, then the result. Checks that shape and returns the result (the last line).
 */
// `any`: each test reads the few fields it checks, and a wrong guess fails its assertion.
export function swapJson(stdout: string): any {
  const lines = stdout.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
  const result = lines.pop();
  if (!result || 'phase' in result) throw new Error(`no result line after the phases in: ${stdout}`);
  for (const line of lines) {
    if (!line.phase || Object.keys(line).length !== 1) throw new Error(`a line before the result is not a phase event: ${JSON.stringify(line)}`);
  }
  return result;
}

/**
 * Runs a command to its end without blocking this process (as spawnSync would), so that the
 * cases of a file can run side by side. Resolves, never rejects: a test asserts the exit status.
 */
export function runAsync(command: string, args: string[], options: ExecFileOptions = {}): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(command, args, { timeout: 120_000, ...options, encoding: 'utf8' }, (error, stdout, stderr) => {
      resolve({ status: error ? (typeof error.code === 'number' ? error.code : null) : 0, stdout, stderr });
    });
  });
}
