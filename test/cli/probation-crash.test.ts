// A new release that crashes at a random moment of its probation, under load, again and again.
// Every upgrade must be reverted (never left crash-looping on trial), with the state carried down
// in the crashed code, so that the numbers after each revert are above every number before; no
// request may go unanswered, and the audit trail must say what really happened.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { extract } from 'tar';
import { request } from '../../kernel/cli/control-client.ts';
import type { StatusResult } from '../../kernel/common/control-protocol.ts';
import { waitUntil } from '../helpers.ts';
import { startNextLoad } from '../http/helpers.ts';
import { sharedExamples, tempDir } from '../release/helpers.ts';
import { buildSequenceVariant } from './variants.ts';

const UPGRADES = 30;
const CLIENTS = 8;

const built = sharedExamples();
const roots: string[] = [];

function cli(root: string, ...args: string[]) {
  return spawnSync(join(root, 'bin', 'kernel'), args, { cwd: root, encoding: 'utf8', timeout: 60_000, env: { ...process.env, THESEUS_ROOT: '' } });
}

/** Runs the CLI without blocking this process, so the load keeps going meanwhile. */
function cliAsync(root: string, ...args: string[]): Promise<{ status: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(join(root, 'bin', 'kernel'), args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, THESEUS_ROOT: '' } });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.once('exit', (status) => resolve({ status, output }));
  });
}

// Release 0.2.5: state vsn 1 (a migration from 0.1.0's vsn 0), and a crash armed by its first
// call, at a random moment of the 3 s probation. Reverting it means migrating down in its code.
const crashyBuild = buildSequenceVariant(
  '0.2.5',
  `let armed = false;
function arm(): void {
  if (armed) return;
  armed = true;
  setTimeout(() => process.exit(3), Math.floor(Math.random() * 1000));
}
interface State { currentNumber: number; delta: number }
export default defineService({
  vsn: '1',
  init: (): State => ({ currentNumber: 456, delta: 1 }),
  calls: {
    nextNumber: ({ state }) => { arm(); return { reply: state.currentNumber, state: { ...state, currentNumber: state.currentNumber + state.delta } }; },
    httpNext: ({ state, release }) => { arm(); return { reply: { body: { number: state.currentNumber, release } }, state: { ...state, currentNumber: state.currentNumber + state.delta } }; },
    httpIncrement: () => ({ reply: { status: 400 } }),
  },
  casts: { incrementNumber: ({ state }, delta: number) => ({ state: { ...state, delta } }) },
  migrations: [{ from: '0', to: '1', up: (n: number): State => ({ currentNumber: n, delta: 1 }), down: (s: State) => s.currentNumber }],
});
`,
  'probationMs: 3000',
);
// Awaited by the test, which fails with its error; until then a failure is not unhandled.
crashyBuild.catch(() => undefined);

after(() => {
  for (const root of roots) cli(root, 'stop');
});

test(`a release that crashes at a random moment of its probation, ${UPGRADES} times under load: each one reverted, the state carried down, nothing lost, the audit true`, async () => {
  const [{ results }, crashy] = await Promise.all([built, crashyBuild]);
  const root = await tempDir('theseus-probation-');
  await extract({ file: results[0]!.tarball, cwd: root });
  roots.push(root);
  assert.equal(cli(root, 'start').status, 0);
  const port = (JSON.parse(cli(root, 'status', '--json').stdout) as StatusResult).http!.listeners[0]!.port;
  const load = startNextLoad(() => port, CLIENTS);
  const waitForAnswers = async (count: number) => {
    const target = load.answered() + count;
    await waitUntil(`${count} more HTTP answers`, () => load.answered() >= target);
  };
  const revertedAt: number[] = [];
  try {
    await waitForAnswers(50);
    for (let upgrade = 1; upgrade <= UPGRADES; upgrade++) {
      const result = await cliAsync(root, 'upgrade', crashy.tarball);
      revertedAt.push(performance.now());
      assert.equal(result.status, 1, `upgrade #${upgrade} must fail its probation:\n${result.output}`);
      assert.match(result.output, /crashed during probation.*Reverted to 0\.1\.0, with the state carried back/s, `upgrade #${upgrade}`);
      assert.match(result.output, /\[E_PROBATION_FAILED\]/);
      // Over the control socket, as `status --json` asks it: a CLI process each time would add
      // its boot to every round, and a synchronous spawn would stall the load meanwhile.
      const status = await request(root, 'status', {});
      assert.deepEqual(
        [status.release, status.permanent, status.services[0]!.release, status.services[0]!.state],
        ['0.1.0', '0.1.0', '0.1.0', 'running'],
        `after upgrade #${upgrade}, 0.1.0 runs and serves`,
      );
      await waitForAnswers(20);
    }
  } finally {
    await load.stop();
  }

  // The audit trail: each upgrade recorded as rolled back in probation, each revert as done.
  const audit = (await readFile(join(root, 'var', 'audit.jsonl'), 'utf8'))
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as { op: string; to: string | null; outcome: string; phase?: string });
  const upgrades = audit.filter((entry) => entry.op === 'upgrade' && entry.to === '0.2.5');
  assert.equal(upgrades.length, UPGRADES);
  assert.ok(upgrades.every((entry) => entry.outcome === 'rolled-back' && entry.phase === 'probation'), 'every upgrade is audited as rolled back in probation');
  const rollbacks = audit.filter((entry) => entry.op === 'rollback');
  assert.equal(rollbacks.length, UPGRADES);
  assert.ok(rollbacks.every((entry) => entry.outcome === 'ok'), 'every revert is audited as done');

  // Nothing lost: every request was answered (200, or 503 for one started when its worker
  // died), and no connection failed.
  assert.deepEqual(load.errors, [], 'no request failed without an answer');
  const statuses = Object.fromEntries(load.statuses);
  assert.deepEqual(Object.keys(statuses).sort(), Object.keys(statuses).filter((code) => code === '200' || code === '503').sort(), `only 200 and 503: ${JSON.stringify(statuses)}`);
  assert.ok((statuses['503'] ?? 0) <= UPGRADES * CLIENTS, `at most the requests in flight at each crash failed: ${JSON.stringify(statuses)}`);

  // No number twice; each client's numbers rise; and after each revert, every number handed out
  // is above every number received before it.
  const receipts = load.received.flat();
  const numbers = receipts.map((receipt) => receipt.n);
  assert.equal(new Set(numbers).size, numbers.length, 'no number was handed out twice');
  for (const record of load.received) {
    for (let i = 1; i < record.length; i++) assert.ok(record[i]!.n > record[i - 1]!.n, 'each client gets rising numbers');
  }
  for (const [index, at] of revertedAt.entries()) {
    const before = Math.max(...receipts.filter((receipt) => receipt.receivedAt < at).map((receipt) => receipt.n));
    const after = Math.min(...receipts.filter((receipt) => receipt.sentAt > at).map((receipt) => receipt.n));
    assert.ok(after > before, `after revert #${index + 1}: ${after} handed out, but ${before} had been received before`);
  }
  assert.equal(cli(root, 'stop').status, 0);
});
