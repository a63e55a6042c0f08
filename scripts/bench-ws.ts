// `npm run bench:ws`: WebSocket connections through hot upgrades, against the usual way.
//
//  1. Build releases 0.1.0 and 0.2.0 of the chat example, unpack 0.1.0's tarball into a fresh
//     deploy root and start the kernel there with its own bin/kernel (a real daemon).
//  2. Theseus: <connections> real `ws` clients in rooms of 10, each saying numbered lines in a loop
//     (2 on their way at once), while bin/kernel swaps 0.1.0 -> 0.2.0 -> 0.1.0 -> ... <swaps>
//     times, each swap a full upgrade or downgrade with its probation and the state migration
//     (rooms gain or lose their history). Every line is checked at every member of its room:
//     got exactly once, in order per sender (scripts/bench/ws-chat-load.ts); and no connection may
//     close.
//  3. Plain: the same clients against the same chat written as a plain `ws` server in one process
//     (scripts/bench/plain-ws-chat.mjs), no upgrades: the rate to compare with.
//  4. PM2: that plain server under PM2 (cluster mode, one instance), `pm2 reload`ed as many times
//     as the kernel swapped, at the same pace; the clients connect again after each close, and
//     the disconnects and lost lines are counted the same way.
//
// `--json` prints one JSON object on stdout. The exit code is non-zero when, for Theseus, a swap
// failed, a connection closed or failed to open, or a line was lost, repeated or out of order;
// the rates and PM2's figures are reported only.

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { extract } from 'tar';
import { ControlConnection } from '../kernel/cli/control-client.ts';
import type { StatusResult, SwapResult } from '../kernel/common/control-protocol.ts';
import { buildRelease } from '../kernel/release/build.ts';
import { ChatLoad, type ChatLoadResult } from './bench/ws-chat-load.ts';
import { kernelCli } from './bench/kernel-cli.ts';
import { helpIfAsked, positiveIntegers } from './bench/args.ts';

const usage = `Usage: npm run bench:ws -- [options]

Many real ws clients chat in rooms while the kernel upgrades and downgrades the chat example; then
the same clients against a plain ws chat server, alone and under PM2 reloads.

Options:
  --connections <n>   WebSocket clients (default 2000; 300 with --quick)
  --swaps <n>         upgrades and downgrades, and as many PM2 reloads (default 20; 4 with --quick)
  --plain-seconds <s> how long the plain server is loaded (default 10; 2 with --quick)
  --think-ms <ms>     a client's pause between a line coming back and its next one (default 0,
                      flat out; 500 with --quick, so the short run's swaps are not slowed by a
                      saturated machine: it checks correctness, its rates are not comparable)
  --no-pm2            leave out the PM2 half
  --pm2               run the PM2 half in a --quick run too
  --quick             a short run, for CI: Theseus and the plain server, without the PM2 half
  --json              print one JSON object on stdout (progress goes to stderr)
  -h, --help          show this help`;

const { values: options } = parseArgs({
  options: {
    connections: { type: 'string' },
    swaps: { type: 'string' },
    'plain-seconds': { type: 'string' },
    'think-ms': { type: 'string' },
    'no-pm2': { type: 'boolean', default: false },
    pm2: { type: 'boolean', default: false },
    quick: { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
  strict: true,
});
helpIfAsked(options.help, usage);
const positiveInteger = positiveIntegers('bench:ws', usage);
const positiveIntegerOrZero = (name: string, value: string | undefined, fallback: number) => (value === '0' ? 0 : positiveInteger(name, value, fallback));

const quick = options.quick;
const CONNECTIONS = positiveInteger('connections', options.connections, quick ? 300 : 2000);
const SWAPS = positiveInteger('swaps', options.swaps, quick ? 4 : 20);
const PLAIN_SECONDS = positiveInteger('plain-seconds', options['plain-seconds'], quick ? 2 : 10);
const THINK_MS = positiveIntegerOrZero('think-ms', options['think-ms'], quick ? 500 : 0);
const ROOM_SIZE = 10;
const WINDOW = 2;
/** Load before the first swap and after the last one. */
const SETTLE_MS = quick ? 500 : 1000;
/** How long the lines still on their way at the end may take to arrive. */
const DRAIN_MS = 30_000;
const repo = fileURLToPath(new URL('..', import.meta.url));
const started = performance.now();
const progress = (line: string) => process.stderr.write(`[${((performance.now() - started) / 1000).toFixed(1)} s] ${line}\n`);
const run = promisify(execFile);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function load(url: string, reconnect: boolean, connections = CONNECTIONS): ChatLoad {
  return new ChatLoad({ url, connections, roomSize: ROOM_SIZE, window: WINDOW, reconnect, thinkMs: THINK_MS });
}

interface Swap {
  op: 'upgrade' | 'downgrade';
  to: string;
  ok: boolean;
  error?: string;
  /** How long the chat service could start no handler. */
  pauseMs?: number;
}

/** Theseus: bin/kernel swaps the chat up and down under the load. Returns the load's figures and the swaps. */
async function theseus(work: string, deploy: string): Promise<{ result: ChatLoadResult; swaps: Swap[]; seconds: number }> {
  const operator = await ControlConnection.open(deploy);
  try {
    const status = (await operator.request('status', {})) as StatusResult;
    const port = status.http?.listeners[0]?.port;
    if (!port) throw new Error('the kernel opened no HTTP listener; the chat release should declare one');
    const chat = load(`ws://127.0.0.1:${port}/chat`, false);
    progress(`theseus: opening ${CONNECTIONS} connections`);
    await chat.connect();
    const began = performance.now();
    chat.start();
    await sleep(SETTLE_MS);
    const swaps: Swap[] = [];
    for (let i = 0; i < SWAPS; i++) {
      const op = i % 2 === 0 ? 'upgrade' : 'downgrade';
      const to = op === 'upgrade' ? '0.2.0' : '0.1.0';
      const swapStarted = performance.now();
      try {
        // The deploy root's own bin/kernel, as an operator runs it: the tarball the first time, then
        // the installed version.
        const source = i === 0 ? join(work, 'build', to, `chat-${to}.tar.gz`) : to;
        const { stdout } = await run(join(deploy, 'bin', 'kernel'), [op, source, '--json'], { cwd: deploy, timeout: 120_000 });
        const result = JSON.parse(stdout.trim().split('\n').at(-1)!) as SwapResult;
        swaps.push({ op, to, ok: true, pauseMs: result.report.services.find((service) => service.service === 'chat')?.pauseMs ?? 0 });
      } catch (error) {
        swaps.push({ op, to, ok: false, error: (error as Error).message });
      }
      const swap = swaps.at(-1)!;
      const took = ((performance.now() - swapStarted) / 1000).toFixed(1);
      progress(`theseus: ${op} to ${to} ${swap.ok ? `done in ${took} s, chat paused ${swap.pauseMs!.toFixed(1)} ms` : `FAILED: ${swap.error}`} (${i + 1} of ${SWAPS})`);
    }
    await sleep(SETTLE_MS);
    const seconds = (performance.now() - began) / 1000;
    return { result: await chat.stop(DRAIN_MS), swaps, seconds };
  } finally {
    operator.close();
  }
}

/** The plain `ws` chat alone, no upgrades: the rate to compare with. */
async function plain(): Promise<ChatLoadResult> {
  const child = spawn(process.execPath, [join(repo, 'scripts', 'bench', 'plain-ws-chat.mjs')], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const port = await new Promise<number>((resolve, reject) => {
      child.stdout!.once('data', (chunk: Buffer) => resolve(Number(chunk.toString().trim())));
      child.once('exit', (code) => reject(new Error(`the plain ws server exited with ${code}`)));
    });
    const chat = load(`ws://127.0.0.1:${port}/chat`, false);
    progress(`plain ws: opening ${CONNECTIONS} connections, then ${PLAIN_SECONDS} s of chat`);
    await chat.connect();
    chat.start();
    await sleep(PLAIN_SECONDS * 1000);
    return await chat.stop(DRAIN_MS);
  } finally {
    stopChild(child);
  }
}

function stopChild(child: ChildProcess): void {
  if (child.exitCode === null) child.kill();
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/**
 * The plain chat under PM2, reloaded `SWAPS` times, one reload per `intervalMs` (the kernel's pace
 * of swaps). PM2 runs with its home in `work`, so it touches no PM2 the machine already has.
 */
async function underPm2(work: string, intervalMs: number): Promise<{ result: ChatLoadResult; reloads: number }> {
  process.env.PM2_HOME = join(work, 'pm2');
  // Imported only now: PM2 reads PM2_HOME when it loads.
  const pm2 = (await import('pm2')).default;
  const call = <T>(fn: (callback: (error: Error | null, value: T) => void) => void) => promisify(fn)();
  // A daemon of its own (not PM2's no-daemon mode, which would print its log on this stdout).
  await call<void>((done) => pm2.connect(false, (error) => done(error, undefined)));
  const port = await freePort();
  const name = 'plain-ws-chat';
  try {
    await call((done) =>
      pm2.start({ name, script: join(repo, 'scripts', 'bench', 'plain-ws-chat.mjs'), exec_mode: 'cluster', instances: 1, env: { PORT: String(port) }, autorestart: true }, done),
    );
    const chat = load(`ws://127.0.0.1:${port}/chat`, true);
    // The server may take a moment to listen under PM2: one client tries until it is welcomed.
    for (let tries = 0; ; tries++) {
      const probe = load(`ws://127.0.0.1:${port}/chat`, false, 1);
      await probe.connect();
      const { connectFailures } = await probe.stop(0);
      if (connectFailures === 0) break;
      if (tries > 40) throw new Error(`the plain ws chat under PM2 did not answer on port ${port}`);
      await sleep(250);
    }
    progress(`pm2: opening ${CONNECTIONS} connections`);
    await chat.connect();
    chat.start();
    await sleep(SETTLE_MS);
    let reloads = 0;
    for (let i = 0; i < SWAPS; i++) {
      const reloadStarted = performance.now();
      await call((done) => pm2.reload(name, done));
      reloads++;
      progress(`pm2: reload ${reloads} of ${SWAPS}`);
      // One reload per interval, as the kernel's swaps went, however long a reload itself takes.
      await sleep(Math.max(0, intervalMs - (performance.now() - reloadStarted)));
    }
    await sleep(SETTLE_MS);
    // The lines lost in a reload never come: a short wait for the rest.
    return { result: await chat.stop(2000), reloads };
  } finally {
    await call((done) => pm2.delete(name, done)).catch(() => undefined);
    await call<void>((done) => pm2.killDaemon((error) => done(error, undefined))).catch(() => undefined);
    pm2.disconnect();
  }
}

async function main(): Promise<number> {
  const work = await mkdtemp(join(tmpdir(), 'theseus-bench-ws-'));
  const deploy = join(work, 'deploy');
  let kernelStarted = false;
  try {
    progress(`bench:ws: ${cpus().length} cores, ${CONNECTIONS} connections in rooms of ${ROOM_SIZE}, ${SWAPS} swaps, think time ${THINK_MS} ms${quick ? ' (quick)' : ''}`);
    for (const version of ['0.1.0', '0.2.0']) await buildRelease({ configFile: join(repo, 'services', 'chat', version, 'theseus.config.ts'), outDir: join(work, 'build') });
    await mkdir(deploy);
    await extract({ file: join(work, 'build', '0.1.0', 'chat-0.1.0.tar.gz'), cwd: deploy });
    kernelCli(deploy, ['start']);
    kernelStarted = true;

    const ours = await theseus(work, deploy);
    progress(`theseus: ${JSON.stringify(ours.result)}`);
    kernelCli(deploy, ['stop']);
    kernelStarted = false;
    const baseline = await plain();
    progress(`plain ws: ${JSON.stringify(baseline)}`);
    const swapIntervalMs = Math.round((ours.seconds * 1000) / Math.max(1, SWAPS));
    // CI's short run leaves PM2 out: its reloads take seconds each, and its figures are only reported.
    const withPm2 = options['no-pm2'] ? false : quick ? options.pm2 : true;
    const pm2 = withPm2 ? await underPm2(work, swapIntervalMs) : null;

    const failedSwaps = ours.swaps.filter((swap) => !swap.ok);
    const r = ours.result;
    const summary = {
      cores: cpus().length,
      thinkMs: THINK_MS,
      wsConnections: r.connections,
      wsSwaps: ours.swaps.length - failedSwaps.length,
      wsFailedSwaps: failedSwaps.length,
      wsDisconnects: r.disconnects,
      wsConnectFailures: r.connectFailures,
      wsLinesSent: r.sent,
      wsDelivered: r.delivered,
      wsLostMessages: r.lost,
      wsDuplicatedMessages: r.duplicated,
      wsOutOfOrder: r.outOfOrder,
      wsMessagesPerSec: r.messagesPerSec,
      wsMaxPauseMs: Math.round(Math.max(0, ...ours.swaps.map((swap) => swap.pauseMs ?? 0)) * 100) / 100,
      wsPlainMessagesPerSec: baseline.messagesPerSec,
      pm2: pm2
        ? ({
            reloads: pm2.reloads,
            disconnects: pm2.result.disconnects,
            lostMessages: pm2.result.lost,
            duplicatedMessages: pm2.result.duplicated,
            gaps: pm2.result.outOfOrder,
            messagesPerSec: pm2.result.messagesPerSec,
          } satisfies Pm2Figures)
        : null,
    };
    if (options.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
    else printReport(summary, failedSwaps);
    const broken = failedSwaps.length > 0 || r.disconnects > 0 || r.connectFailures > 0 || r.lost > 0 || r.duplicated > 0 || r.outOfOrder > 0 || baseline.lost > 0;
    return broken ? 1 : 0;
  } finally {
    if (kernelStarted) {
      try {
        kernelCli(deploy, ['stop']);
      } catch (error) {
        progress(`bench:ws: stopping the kernel failed: ${(error as Error).message}`);
      }
    }
    await rm(work, { recursive: true, force: true });
  }
}

interface Pm2Figures {
  reloads: number;
  disconnects: number;
  lostMessages: number;
  duplicatedMessages: number;
  gaps: number;
  messagesPerSec: number;
}

type Summary = Record<'wsConnections' | 'wsSwaps' | 'wsDisconnects' | 'wsLostMessages' | 'wsDuplicatedMessages' | 'wsOutOfOrder' | 'wsMessagesPerSec' | 'wsPlainMessagesPerSec', number> & {
  pm2: Pm2Figures | null;
};

function printReport(s: Summary, failedSwaps: Swap[]): void {
  const lines = [
    '',
    `                     connections  swaps/reloads  disconnects  lost  duplicated  out of order  messages/s`,
    `Theseus (hot swaps)  ${pad(s.wsConnections, 11)}  ${pad(s.wsSwaps, 13)}  ${pad(s.wsDisconnects, 11)}  ${pad(s.wsLostMessages, 4)}  ${pad(s.wsDuplicatedMessages, 10)}  ${pad(s.wsOutOfOrder, 12)}  ${pad(s.wsMessagesPerSec, 10)}`,
    `plain ws, no reload  ${pad(s.wsConnections, 11)}  ${pad(0, 13)}  ${'-'.padStart(11)}  ${'-'.padStart(4)}  ${'-'.padStart(10)}  ${'-'.padStart(12)}  ${pad(s.wsPlainMessagesPerSec, 10)}`,
    s.pm2
      ? `plain ws under PM2   ${pad(s.wsConnections, 11)}  ${pad(s.pm2.reloads, 13)}  ${pad(s.pm2.disconnects, 11)}  ${pad(s.pm2.lostMessages, 4)}  ${pad(s.pm2.duplicatedMessages, 10)}  ${pad(s.pm2.gaps, 12)}  ${pad(s.pm2.messagesPerSec, 10)}`
      : 'plain ws under PM2   (left out: --no-pm2, or --quick without --pm2)',
    '',
    ...failedSwaps.map((swap) => `failed swap: ${swap.op} to ${swap.to}: ${swap.error}`),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

function pad(value: number, width: number): string {
  return String(value).padStart(width);
}

const code = await main();
// PM2's client keeps handles open after its daemon is gone; the run is over.
process.exit(code);
