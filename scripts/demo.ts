// `npm run demo`: the seed's story, in one process, through the Kernel API. The sequence server
// goes 0.1.0 -> 0.2.0 -> 0.1.0 -> 0.2.0 -> 0.3.0 (with a state migration) while 200 concurrent
// callers keep calling it, and the summary checks that no call was lost, failed or repeated.
//
// Later issues move this onto real release tarballs and the `kernel` CLI; the story stays the same.

import { fileURLToPath } from 'node:url';
import { Kernel, type LogRecord, type SwapReport } from '../kernel/index.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
type Version = '0.1.0' | '0.2.0' | '0.3.0';
const release = (version: Version) => ({ release: version, services: { sequence: { entry: `${root}services/sequence/${version}/sequence.ts` } } });

interface SequenceApi {
  nextNumber(): Promise<number | string>;
  incrementNumber(delta: number): void;
}

const say = (line: string) => process.stdout.write(`${line}\n`);
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function parse(reply: number | string): number {
  if (typeof reply === 'number') return reply;
  const match = /(-?\d+)$/.exec(reply);
  if (!match) throw new Error(`unexpected reply ${JSON.stringify(reply)}`);
  return Number(match[1]);
}

function showLog(record: LogRecord): void {
  if (record.service === 'kernel' && record.level !== 'error') return;
  const data = record.data === undefined ? '' : ` ${JSON.stringify(record.data)}`;
  say(`    [${record.service}@${record.release}] ${record.level}: ${record.message}${data}`);
}

async function main(): Promise<number> {
  say('Theseus demo: the sequence server, upgraded and downgraded while 200 callers keep calling it.\n');
  say('1. Start the kernel on release 0.1.0');
  const kernel = await Kernel.start({ ...release('0.1.0'), onLog: showLog });
  // The operator's own client, as the seed's iex console; its numbers count in the summary too.
  const operatorClient = kernel.client<SequenceApi>('sequence');
  const operatorNumbers: number[] = [];
  const ask = async () => {
    const reply = await operatorClient.nextNumber();
    operatorNumbers.push(parse(reply));
    return reply;
  };
  say(`   nextNumber() -> ${JSON.stringify(await ask())}`);

  // The load: 200 callers over 20 ports, each waiting for its reply before the next call.
  const perCaller: number[][] = [];
  const failures: unknown[] = [];
  let calls = 0;
  let stop = false;
  const clients = Array.from({ length: 20 }, () => kernel.client<SequenceApi>('sequence', { dedicated: true }));
  const callers = Array.from({ length: 200 }, async (_, index) => {
    const mine: number[] = [];
    perCaller.push(mine);
    while (!stop) {
      calls++;
      try {
        mine.push(parse(await clients[index % clients.length]!.nextNumber()));
      } catch (error) {
        failures.push(error);
        stop = true;
      }
    }
  });
  await pause(300);

  const pauses: Array<{ step: string; report: SwapReport }> = [];
  const step = async (label: string, version: Version, direction: 'upgrade' | 'downgrade') => {
    say(`\n${pauses.length + 2}. ${label}`);
    const report = await kernel[direction](release(version));
    const service = report.services[0]!;
    pauses.push({ step: `${service.from.release} -> ${service.to.release}`, report });
    say(`   ${report.outcome}: ${service.from.release} (vsn ${service.from.vsn}) -> ${service.to.release} (vsn ${service.to.vsn}), ` +
      `migration ${service.migration}, state ${service.stateBytes} bytes, pause ${service.pauseMs.toFixed(2)} ms`);
    say(`   nextNumber() -> ${JSON.stringify(await ask())}`);
    await pause(300);
  };

  await step('Upgrade to 0.2.0: the reply becomes a sentence', '0.2.0', 'upgrade');
  await step('Downgrade to 0.1.0: back to bare numbers', '0.1.0', 'downgrade');
  await step('Upgrade to 0.2.0 again', '0.2.0', 'upgrade');
  await step('Upgrade to 0.3.0: the state gains a delta (vsn 0 -> 1)', '0.3.0', 'upgrade');

  say(`\n${pauses.length + 2}. incrementNumber(10) now sets the step between numbers`);
  operatorClient.incrementNumber(10);
  const a = parse(await ask());
  const b = parse(await ask());
  say(`   nextNumber() -> ${a}, then ${b} (a multiple of 10 apart: the other callers take numbers in between)`);
  await pause(300);

  stop = true;
  await Promise.all(callers);
  await kernel.stop();

  // The invariants: every number handed out once, each caller's numbers rising, and the numbers
  // consecutive (step 1, then step 10 once the cast took effect).
  const all = [...perCaller.flat(), ...operatorNumbers].sort((x, y) => x - y);
  const duplicates = all.filter((n, i) => i > 0 && n === all[i - 1]).length;
  const steps = new Set(all.slice(1).map((n, i) => n - all[i]!));
  const ordered = perCaller.every((mine) => mine.every((n, i) => i === 0 || n > mine[i - 1]!));
  const consecutive = [...steps].every((s) => s === 1 || s === 10);
  const answered = all.length - operatorNumbers.length;
  const lost = calls - answered - failures.length;

  say('\nSummary');
  say(`   calls made        ${calls}`);
  say(`   answered          ${answered}`);
  say(`   failed            ${failures.length}`);
  say(`   lost              ${lost}`);
  say(`   duplicated        ${duplicates}`);
  say(`   in order/caller   ${ordered ? 'yes' : 'NO'}`);
  say(`   consecutive       ${consecutive ? 'yes' : 'NO'} (steps seen: ${[...steps].join(', ')})`);
  say(`   kernel pid        ${process.pid} throughout (one process, no restart)`);
  for (const { step, report } of pauses) say(`   pause ${step.padEnd(16)} ${report.services[0]!.pauseMs.toFixed(2)} ms`);
  const ok = failures.length === 0 && lost === 0 && duplicates === 0 && ordered && consecutive;
  say(ok ? '\nOK: nothing lost, failed or repeated.' : '\nFAILED: see above.');
  return ok ? 0 : 1;
}

process.exitCode = await main();
