// `npm run demo`: the seed's story, end to end, with the real artifacts and the real CLI.
//
//  1. build releases 0.1.0, 0.2.0 and 0.3.0 of the sequence app from their sources (kernel release);
//  2. unpack the 0.1.0 tarball into a fresh deploy folder (the seed's ~/deploy);
//  3. start the kernel there with that folder's own bin/kernel start;
//  4. keep 100 concurrent callers calling nextNumber over the control socket, and 20 HTTP clients
//     calling GET /next on the release's HTTP front door, for the whole story;
//  5. upgrade to 0.2.0, downgrade to 0.1.0, upgrade to 0.2.0, then to 0.3.0 (state vsn 0 -> 1),
//     showing the migration's own log lines; set the step with incrementNumber(10);
//  6. stop, and check: no call failed, lost or answered twice, the numbers consecutive, one
//     kernel process throughout. Exit non-zero if any of that is not true.
//
// `npm run demo -- --keep` leaves the kernel running at the end (and its folder in place), so a
// person can open its dashboard, whose address the demo prints.

import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { Agent, request as httpRequest } from 'node:http';
import type { Socket } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { extract } from 'tar';
import { ControlConnection } from '../kernel/cli/control-client.ts';
import { sequenceNumber } from '../services/sequence/shared/reply.ts';

const repo = fileURLToPath(new URL('..', import.meta.url));
const versions = ['0.1.0', '0.2.0', '0.3.0', '0.4.0', '0.5.0'] as const;
const CALLERS = 100;
const CONNECTIONS = 4;
const HTTP_CALLERS = 20;
const HTTP_SOCKETS = 10;

const say = (line = '') => process.stdout.write(`${line}\n`);
const options = process.argv.slice(2);
for (const option of options) {
  if (option !== '--keep') {
    process.stderr.write(`demo: unknown option '${option}'; the demo takes --keep (leave the kernel running at the end, to look at its dashboard)\n`);
    process.exit(2);
  }
}
const keep = options.includes('--keep');
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
let stepNumber = 0;
const step = (title: string) => say(`\n${++stepNumber}. ${title}`);

/** Runs a command, shows what it printed (indented), and fails the demo if it failed. */
function run(command: string, args: string[], cwd: string): string {
  say(`   $ ${[command.startsWith(repo) ? command.slice(repo.length) : command, ...args].join(' ')}`);
  const result = spawnSync(command, args, { cwd, encoding: 'utf8', timeout: 120_000 });
  for (const line of `${result.stdout}${result.stderr}`.trimEnd().split('\n')) if (line) say(`     ${line}`);
  if (result.status !== 0) throw new Error(`'${command} ${args.join(' ')}' exited with ${result.status}`);
  return result.stdout;
}

/**
 * The same, without blocking this process: the callers keep calling while the command runs. Its
 * lines are printed as they come, so the log lines the swap causes follow the line that started it.
 */
async function runAsync(command: string, args: string[], cwd: string): Promise<string> {
  say(`   $ ${[command.startsWith(repo) ? command.slice(repo.length) : command, ...args].join(' ')}`);
  const child = spawn(command, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000 });
  let stdout = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  const printed = [createInterface({ input: child.stdout }), createInterface({ input: child.stderr })].map(
    (lines) => new Promise<void>((resolve) => lines.on('line', (line) => line && say(`     ${line}`)).once('close', resolve)),
  );
  const [code] = (await once(child, 'close')) as [number | null];
  await Promise.all(printed);
  if (code !== 0) throw new Error(`'${command} ${args.join(' ')}' exited with ${code}`);
  return stdout;
}

/** GET /next on the front door, over a keep-alive connection of `agent`. */
function getNext(port: number, agent: Agent): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path: '/next', agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => (res.statusCode === 200 ? resolve((JSON.parse(body) as { number: number }).number) : reject(new Error(`GET /next: ${res.statusCode} ${body}`))));
    });
    req.on('error', reject);
    req.end();
  });
}

async function main(): Promise<number> {
  say('Theseus demo: the sequence server, upgraded, downgraded and migrated while 100 callers keep calling it.');
  const work = await mkdtemp(join(tmpdir(), 'theseus-demo-'));
  const builds = join(work, 'build');
  const deploy = join(work, 'deploy');
  const kernel = join(deploy, 'bin', 'kernel');
  let started = false;
  try {
    step('Build the five releases from their sources');
    for (const version of versions) {
      run(process.execPath, [join(repo, 'kernel'), 'release', '--config', `services/sequence/${version}/theseus.config.ts`, '--out', builds], repo);
    }
    const tarball = (version: string) => join(builds, version, `sequence-${version}.tar.gz`);

    step(`Unpack sequence-0.1.0.tar.gz into a fresh deploy folder, ${deploy}`);
    const { mkdir } = await import('node:fs/promises');
    await mkdir(deploy);
    await extract({ file: tarball('0.1.0'), cwd: deploy });
    const { readdir } = await import('node:fs/promises');
    say(`   ${(await readdir(deploy, { recursive: true })).map(String).filter((path) => path.split('/').length <= 2).sort().join('  ')}`);

    step('Start the kernel with the deploy folder\'s own bin/kernel');
    run(kernel, ['start'], deploy);
    started = true;
    const pid = run(kernel, ['pid'], deploy).trim();
    step('Its live dashboard (and /metrics for Prometheus): open the page while the story runs');
    run(kernel, ['dashboard'], deploy);

    // The operator's connection (the seed's iex console), the callers' connections, and the log.
    const operator = await ControlConnection.open(deploy);
    const ask = async () => ((await operator.request('call', { service: 'sequence', method: 'nextNumber', args: [] })) as { reply: number | string }).reply;
    const logStream = await ControlConnection.open(deploy);
    void logStream
      .request(
        'logs',
        {},
        {
          timeoutMs: 24 * 3600_000,
          onLog: (record) => {
            if (record.service !== 'kernel' && record.level !== 'debug') {
              const data = record.data === undefined ? '' : ` ${JSON.stringify(record.data)}`;
              say(`     [${record.service}@${record.release}] ${record.level}: ${record.message}${data}`);
            }
          },
        },
      )
      .catch(() => undefined);

    step(`Keep ${CALLERS} callers calling nextNumber() over the control socket, and ${HTTP_CALLERS} HTTP clients calling GET /next, for the rest of the story`);
    const status = (await operator.request('status', {})) as { http: { listeners: Array<{ port: number }> } | null };
    const httpPort = status.http?.listeners[0]?.port;
    if (!httpPort) throw new Error('the release opened no HTTP listener');
    say(`   the front door listens on http://127.0.0.1:${httpPort}`);
    let httpConnections = 0;
    const agent = new Agent({ keepAlive: true, maxSockets: HTTP_SOCKETS });
    const createConnection = agent.createConnection.bind(agent) as (...args: unknown[]) => Socket;
    agent.createConnection = ((...args: unknown[]) => {
      httpConnections++;
      return createConnection(...args);
    }) as Agent['createConnection'];
    let httpRequests = 0;
    const connections = await Promise.all(Array.from({ length: CONNECTIONS }, () => ControlConnection.open(deploy)));
    const perCaller: number[][] = [];
    const operatorNumbers: number[] = [];
    const failures: unknown[] = [];
    let calls = 0;
    let stop = false;
    const callers = Array.from({ length: CALLERS }, async (_, index) => {
      const mine: number[] = [];
      perCaller.push(mine);
      const connection = connections[index % CONNECTIONS]!;
      while (!stop) {
        calls++;
        try {
          const { reply } = (await connection.request('call', { service: 'sequence', method: 'nextNumber', args: [] })) as { reply: number | string };
          mine.push(sequenceNumber(reply));
        } catch (error) {
          failures.push(error);
          stop = true;
        }
      }
    });
    const httpCallers = Array.from({ length: HTTP_CALLERS }, async () => {
      const mine: number[] = [];
      perCaller.push(mine);
      while (!stop) {
        calls++;
        httpRequests++;
        try {
          mine.push(await getNext(httpPort, agent));
        } catch (error) {
          failures.push(error);
          stop = true;
        }
      }
    });
    const show = async () => {
      const reply = await ask();
      operatorNumbers.push(sequenceNumber(reply));
      say(`   nextNumber() -> ${JSON.stringify(reply)}`);
    };
    await pause(500);
    await show();

    const pids: string[] = [];
    const pauses: Array<{ title: string; pauseMs: string }> = [];
    const swap = async (title: string, args: string[]) => {
      step(title);
      const output = await runAsync(kernel, args, deploy);
      pauses.push({ title: `${args[0]} ${args[1]!.replace(/^.*sequence-(\d+\.\d+\.\d+)\.tar\.gz$/, '$1')}`, pauseMs: /paused ([\d.]+) ms/.exec(output)?.[1] ?? '?' });
      pids.push(run(kernel, ['pid'], deploy).trim());
      await show();
      await pause(500);
    };
    await swap('Upgrade to 0.2.0: the reply becomes a sentence', ['upgrade', tarball('0.2.0')]);
    await swap('Downgrade to 0.1.0: back to bare numbers', ['downgrade', '0.1.0']);
    await swap('Upgrade to 0.2.0 again (already installed)', ['upgrade', '0.2.0']);
    await swap('Upgrade to 0.3.0: the state gains a delta (vsn 0 -> 1), migrated by 0.3.0\'s own code', ['upgrade', tarball('0.3.0')]);

    step('incrementNumber(10) now sets the step between numbers');
    await operator.request('call', { service: 'sequence', method: 'incrementNumber', args: [10] });
    await show();
    await show();
    await pause(500);

    const auditLog = async () => JSON.stringify(((await operator.request('call', { service: 'audit', method: 'auditLog', args: [] })) as { reply: unknown }).reply);
    await swap('Upgrade to 0.4.0: an audit log joins the sequence server, which casts every number it hands out to it', ['upgrade', tarball('0.4.0')]);
    say(`   audit.auditLog() -> ${await auditLog()}`);
    await swap('Upgrade to 0.5.0: the audit log is removed again; the kernel keeps its last state', ['upgrade', tarball('0.5.0')]);
    const kept = ((await operator.request('status', {})) as { kept: Array<{ service: string; release: string; bytes: number }> }).kept;
    say(`   kept state: ${kept.map((k) => `${k.service} (from ${k.release}, ${k.bytes} bytes)`).join(', ') || 'none'}`);
    await swap('Downgrade to 0.4.0: the audit log comes back where it stopped', ['downgrade', '0.4.0']);
    say(`   audit.auditLog() -> ${await auditLog()}`);

    stop = true;
    await Promise.all([...callers, ...httpCallers]);
    agent.destroy();
    if (!keep) {
      step('Stop the kernel');
      run(kernel, ['stop'], deploy);
      started = false;
    }
    for (const connection of [...connections, operator, logStream]) connection.close();

    // The invariants.
    const all = [...perCaller.flat(), ...operatorNumbers].sort((a, b) => a - b);
    const answered = perCaller.flat().length;
    const duplicates = all.filter((n, i) => i > 0 && n === all[i - 1]).length;
    const steps = new Set(all.slice(1).map((n, i) => n - all[i]!));
    const ordered = perCaller.every((mine) => mine.every((n, i) => i === 0 || n > mine[i - 1]!));
    const consecutive = [...steps].every((s) => s === 1 || s === 10);
    const lost = calls - answered - failures.length;
    const samePid = pids.every((p) => p === pid);

    say('\nSummary');
    say(`   calls made        ${calls} (${httpRequests} of them HTTP requests, over ${httpConnections} keep-alive connections kept through every swap)`);
    say(`   answered          ${answered}`);
    say(`   failed            ${failures.length}${failures.length ? ` (first: ${String(failures[0])})` : ''}`);
    say(`   lost              ${lost}`);
    say(`   duplicated        ${duplicates}`);
    say(`   in order/caller   ${ordered ? 'yes' : 'NO'}`);
    say(`   consecutive       ${consecutive ? 'yes' : 'NO'} (steps between numbers: ${[...steps].sort((a, b) => a - b).join(', ')})`);
    say(`   kernel pid        ${pid}${samePid ? ', the same throughout' : `, CHANGED: ${pids.join(', ')}`}`);
    for (const { title, pauseMs } of pauses) say(`   pause, ${title.padEnd(18)} ${pauseMs} ms`);
    const ok = failures.length === 0 && lost === 0 && duplicates === 0 && ordered && consecutive && samePid && answered > 0 && httpConnections <= HTTP_SOCKETS;
    say(ok ? '\nOK: nothing lost, failed or repeated, and the kernel never restarted.' : '\nFAILED: see above.');
    if (keep) {
      say(`\nThe kernel keeps running (--keep), its deploy folder too. Its dashboard:`);
      run(kernel, ['dashboard'], deploy);
      say(`Stop it with: ${kernel} stop --root ${deploy}   (then remove ${work})`);
    }
    return ok ? 0 : 1;
  } finally {
    if (started && !keep) spawnSync(kernel, ['stop'], { cwd: deploy });
    if (!keep && !process.env.THESEUS_DEMO_KEEP) await rm(work, { recursive: true, force: true });
  }
}

process.exitCode = await main();
