// The seed's story end to end, through the real CLI and real tarballs, with concurrent callers
// the whole time: up to 0.2.0, down to 0.1.0, up to 0.2.0 and 0.3.0 (state migration), then
// incrementNumber(10). Its own assertions; it does not read the demo's printout.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { extract } from 'tar';
import { ControlConnection } from '../../kernel/cli/control-client.ts';
import { parseSequenceReply, stepRuns, swapJson, waitForCalls } from '../helpers.ts';
import { sharedExamples, tempDir } from '../release/helpers.ts';

let deploy = '';

function cli(...args: string[]) {
  const result = spawnSync(join(deploy, 'bin', 'kernel'), args, { cwd: deploy, encoding: 'utf8', timeout: 120_000 });
  assert.equal(result.status, 0, `bin/kernel ${args.join(' ')}: ${result.stderr}${result.stdout}`);
  return result.stdout;
}

after(() => {
  if (deploy) spawnSync(join(deploy, 'bin', 'kernel'), ['stop'], { cwd: deploy });
});

test('the seed story under load: every call answered once, in order, consecutive, one kernel throughout', async () => {
  const { results } = await sharedExamples();
  deploy = await tempDir('theseus-e2e-');
  await extract({ file: results[0]!.tarball, cwd: deploy });
  cli('start');
  const pid = cli('pid').trim();

  const connections = await Promise.all(Array.from({ length: 4 }, () => ControlConnection.open(deploy)));
  const logs: string[] = [];
  const logStream = await ControlConnection.open(deploy);
  void logStream.request('logs', {}, { timeoutMs: 3600_000, onLog: (record) => logs.push(`${record.service}@${record.release} ${record.message}`) }).catch(() => undefined);

  const perCaller: number[][] = [];
  const failures: unknown[] = [];
  let calls = 0;
  let stop = false;
  const callers = Array.from({ length: 60 }, async (_, index) => {
    const mine: number[] = [];
    perCaller.push(mine);
    while (!stop) {
      calls++;
      try {
        const { reply } = (await connections[index % 4]!.request('call', { service: 'sequence', method: 'nextNumber', args: [] })) as { reply: unknown };
        mine.push(parseSequenceReply(reply));
      } catch (error) {
        failures.push(error);
        stop = true;
      }
    }
  });
  const answered = () => perCaller.reduce((sum, mine) => sum + mine.length, 0);
  const moreCalls = (count: number) => waitForCalls({ answered, failures: () => failures }, count);
  // The operator's own calls: their numbers count in the consecutive check too.
  const operatorNumbers: number[] = [];
  const replyNow = async () => {
    const { reply } = (await connections[0]!.request('call', { service: 'sequence', method: 'nextNumber', args: [] })) as { reply: unknown };
    operatorNumbers.push(parseSequenceReply(reply));
    return reply;
  };

  try {
    await moreCalls(500);
    assert.equal(typeof (await replyNow()), 'number');

    cli('upgrade', results[1]!.tarball);
    await moreCalls(500);
    assert.match(String(await replyNow()), /^The next number is \d+$/);

    cli('downgrade', '0.1.0');
    await moreCalls(500);
    assert.equal(typeof (await replyNow()), 'number', 'back to bare numbers on the first release');

    cli('upgrade', '0.2.0');
    const up = swapJson(cli('upgrade', results[2]!.tarball, '--json')) as { to: string; report: { services: Array<{ migration: string; to: { vsn: string } }> } };
    assert.equal(up.to, '0.3.0');
    assert.equal(up.report.services[0]!.to.vsn, '1');
    await moreCalls(500);

    await connections[0]!.request('call', { service: 'sequence', method: 'incrementNumber', args: [10] });
    await moreCalls(1000);
  } finally {
    stop = true;
    await Promise.all(callers);
  }
  const a = parseSequenceReply(await replyNow());
  const b = parseSequenceReply(await replyNow());
  assert.equal(b - a, 10, 'incrementNumber(10) set the step');

  assert.deepEqual(failures, []);
  const all = perCaller.flat();
  assert.equal(all.length, calls, 'every call answered');
  for (const mine of perCaller) for (let i = 1; i < mine.length; i++) assert.ok(mine[i]! > mine[i - 1]!, 'a caller saw numbers out of order');
  // Every number handed out, callers' and operator's: consecutive, step 1 and then step 10.
  const sorted = [...all, ...operatorNumbers].sort((x, y) => x - y);
  assert.equal(sorted[0], 456);
  assert.deepEqual(stepRuns(sorted).map((run) => run.step), [1, 10], 'numbers are consecutive, with no gap and no repeat');
  assert.equal(cli('pid').trim(), pid, 'one kernel process throughout');
  assert.ok(logs.includes('sequence@0.3.0 Changing code from 0 to 1'), 'the migration logged from 0.3.0');

  cli('stop');
  for (const connection of [...connections, logStream]) connection.close();
  const audit = (await readFile(join(deploy, 'var', 'audit.jsonl'), 'utf8')).trim().split('\n').map((line) => JSON.parse(line) as { op: string; to: string | null; outcome: string });
  assert.deepEqual(
    audit.filter((e) => e.op === 'upgrade' || e.op === 'downgrade').map((e) => [e.op, e.to, e.outcome]),
    [['upgrade', '0.2.0', 'ok'], ['downgrade', '0.1.0', 'ok'], ['upgrade', '0.2.0', 'ok'], ['upgrade', '0.3.0', 'ok']],
  );
});
