// Releases that add and remove a service, hot, through `bin/kernel` in a deploy root unpacked from
// a real tarball, with concurrent callers the whole time: 0.3.0 -> 0.4.0 (adds the audit log the
// sequence server casts every number to) -> 0.5.0 (removes it; its last state is kept) ->
// downgrade 0.4.0 (it comes back where it stopped) -> downgrade 0.3.0. Every call is answered
// once, in order per caller, and the numbers are consecutive. Then, on the same deploy root: an
// added service that fails to boot (nothing switches), a release that removes a service still
// used (refused by `kernel release`), and a SIGKILL after an add (the restart comes back on the
// permanent release with its services).

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { extract } from 'tar';
import { ControlConnection } from '../../kernel/cli/control-client.ts';
import { buildRelease, type BuildResult } from '../../kernel/release/build.ts';
import type { AuditState } from '../../services/sequence/0.4.0/audit.ts';
import { fixture, killAndWait, parseSequenceReply, root as repo, stepRuns, swapJson, waitForCalls, waitUntil } from '../helpers.ts';
import { exampleConfig, tempDir } from '../release/helpers.ts';

let deploy = '';
const built: Record<string, BuildResult> = {};
let outDir = '';

function run(args: string[]) {
  return spawnSync(join(deploy, 'bin', 'kernel'), args, { cwd: deploy, encoding: 'utf8', timeout: 120_000 });
}

function cli(...args: string[]): string {
  const result = run(args);
  assert.equal(result.status, 0, `bin/kernel ${args.join(' ')}: ${result.stderr}${result.stdout}`);
  return result.stdout;
}

// `any`: each check reads the few fields it needs, and a wrong guess fails its assertion.
const status = (): any => JSON.parse(cli('status', '--json'));
const serviceNames = (): string[] => status().services.map((s: { name: string }) => s.name).sort();

/** A release of the sequence app, made in `dir` from a config written here: for the two refusals. */
async function writeApp(dir: string, version: string, services: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'package.json'), JSON.stringify({ name: 'sequence', version, type: 'module' }));
  await writeFile(
    join(dir, 'theseus.config.ts'),
    [`import { defineRelease } from '${repo}kernel/release/config.ts';`, `export default defineRelease({ app: 'sequence', probationMs: 300, services: { ${services} } });`, ''].join('\n'),
  );
  return join(dir, 'theseus.config.ts');
}

before(async () => {
  outDir = await tempDir('theseus-come-and-go-releases-');
  for (const version of ['0.3.0', '0.4.0', '0.5.0']) built[version] = await buildRelease({ configFile: exampleConfig(version), outDir, log: () => undefined });
  deploy = await tempDir('theseus-come-and-go-');
  await extract({ file: built['0.3.0']!.tarball, cwd: deploy });
  cli('start');
});

after(() => {
  if (deploy) spawnSync(join(deploy, 'bin', 'kernel'), ['stop'], { cwd: deploy });
});

test('0.3.0 -> 0.4.0 -> 0.5.0 -> 0.4.0 -> 0.3.0 under load: the audit log comes, goes with its state kept, and comes back', async () => {
  const pid = cli('pid').trim();
  const connections = await Promise.all(Array.from({ length: 4 }, () => ControlConnection.open(deploy)));
  const call = (service: string, method: string, index = 0) => connections[index % 4]!.request('call', { service, method, args: [] }) as Promise<{ reply: unknown }>;
  const auditLog = async () => (await call('audit', 'auditLog')).reply as AuditState;

  const perCaller: number[][] = [];
  const failures: unknown[] = [];
  let calls = 0;
  let stop = false;
  const callers = Array.from({ length: 40 }, async (_, index) => {
    const mine: number[] = [];
    perCaller.push(mine);
    while (!stop) {
      calls++;
      try {
        mine.push(parseSequenceReply((await call('sequence', 'nextNumber', index)).reply));
      } catch (error) {
        failures.push(error);
        stop = true;
      }
    }
  });
  const answered = () => perCaller.reduce((sum, mine) => sum + mine.length, 0);
  const moreCalls = (count: number) => waitForCalls({ answered, failures: () => failures }, count);

  let atRemoval: AuditState;
  try {
    await moreCalls(300);
    const added = swapJson(cli('upgrade', built['0.4.0']!.tarball, '--json'));
    assert.deepEqual(
      added.report.services.map((s: { service: string; change: string; outcome: string }) => [s.service, s.change, s.outcome]).sort(),
      [
        ['audit', 'added', 'switched'],
        ['sequence', 'code', 'switched'],
      ],
    );
    assert.deepEqual(serviceNames(), ['audit', 'sequence']);
    await moreCalls(300);
    const early = await auditLog();
    assert.ok(early.count > 0 && early.outOfOrder === 0, `the audit log records the numbers in order: ${JSON.stringify(early)}`);

    const removed = swapJson(cli('upgrade', built['0.5.0']!.tarball, '--json'));
    assert.deepEqual(
      removed.report.services.map((s: { service: string; change: string }) => [s.service, s.change]).sort(),
      [
        ['audit', 'removed'],
        ['sequence', 'code'],
      ],
    );
    assert.deepEqual(serviceNames(), ['sequence']);
    // Calls to it now fail at once with their own code.
    await assert.rejects(auditLog(), { code: 'E_SERVICE_REMOVED' });
    const kept = status().kept as Array<{ service: string; release: string }>;
    assert.deepEqual(kept.map((k) => [k.service, k.release]), [['audit', '0.4.0']]);
    assert.match(cli('status'), /^kept state: audit \(from 0\.4\.0, vsn 1, /m);
    assert.match(cli('releases'), /KEPT STATE[\s\S]*\n0\.4\.0 .*audit\n/);
    await moreCalls(300);

    cli('downgrade', '0.4.0');
    assert.deepEqual(serviceNames(), ['audit', 'sequence']);
    atRemoval = await auditLog();
    assert.equal(atRemoval.first, early.first, 'the audit log resumed from the state 0.5.0 kept, not from init()');
    assert.ok(atRemoval.count >= early.count);
    assert.deepEqual(status().kept, []);
    await moreCalls(300);
    const resumed = await auditLog();
    assert.ok(resumed.count > atRemoval.count && resumed.outOfOrder === 0, `it records again: ${JSON.stringify(resumed)}`);

    cli('downgrade', '0.3.0');
    assert.deepEqual(serviceNames(), ['sequence']);
    await moreCalls(300);
  } finally {
    stop = true;
    await Promise.all(callers);
  }
  assert.deepEqual(failures, []);
  const all = perCaller.flat();
  assert.equal(all.length, calls, 'every call answered');
  for (const mine of perCaller) for (let i = 1; i < mine.length; i++) assert.ok(mine[i]! > mine[i - 1]!, 'a caller saw numbers out of order');
  const sorted = [...all].sort((x, y) => x - y);
  assert.deepEqual(stepRuns(sorted).map((run) => run.step), [1], 'numbers are consecutive, with no gap and no repeat');
  assert.equal(cli('pid').trim(), pid, 'one kernel process throughout');
  for (const connection of connections) connection.close();
});

test('an added service that fails to boot switches nothing, one unhealthy on probation is removed by the revert, and a release that removes a service still used is refused at build', async () => {
  const apps = await tempDir('theseus-come-and-go-apps-');
  const broken = await buildRelease({
    configFile: await writeApp(join(apps, 'broken'), '0.6.0', `sequence: { entry: '${repo}services/sequence/0.4.0/sequence.ts', durability: 'reply' }, audit: { entry: '${fixture('bad-init-state')}' }`),
    outDir: join(apps, 'broken', 'releases'),
    log: () => undefined,
  });
  const before = status();
  const failed = run(['upgrade', broken.tarball]);
  assert.equal(failed.status, 1, failed.stderr + failed.stdout);
  assert.match(failed.stderr, /rolled back in phase 'prepare'/i);
  const after = status();
  assert.equal(after.release, before.release);
  assert.deepEqual(after.services.map((s: { name: string }) => s.name), ['sequence']);
  assert.deepEqual(after.kept.map((k: { service: string }) => k.service), before.kept.map((k: { service: string }) => k.service), 'no state was written for the service that never opened');

  // An added service that fails its health check on probation: the revert removes it again.
  await mkdir(join(apps, 'unhealthy'), { recursive: true });
  await writeFile(
    join(apps, 'unhealthy', 'audit.ts'),
    [`import audit from '${repo}services/sequence/0.4.0/audit.ts';`, `import { defineService } from '${repo}kernel/service.ts';`, `export default defineService({ ...audit, health: () => 'unhealthy on purpose' });`, ''].join('\n'),
  );
  const unhealthy = await buildRelease({
    configFile: await writeApp(join(apps, 'unhealthy'), '0.6.1', `sequence: { entry: '${repo}services/sequence/0.4.0/sequence.ts', durability: 'reply' }, audit: { entry: './audit.ts' }`),
    outDir: join(apps, 'unhealthy', 'releases'),
    log: () => undefined,
  });
  const reverted = run(['upgrade', unhealthy.tarball]);
  assert.equal(reverted.status, 1, reverted.stderr + reverted.stdout);
  assert.match(reverted.stderr, /failed its probation: unhealthy on purpose\. Reverted to 0\.3\.0/);
  assert.equal(status().release, '0.3.0');
  assert.deepEqual(serviceNames(), ['sequence']);

  // 0.4.0's sequence still uses the audit log; a release from 0.4.0 without it is refused.
  const stillUsed = await writeApp(join(apps, 'still-used'), '0.5.1', `sequence: { entry: '${repo}services/sequence/0.4.0/sequence.ts' }`);
  const refused = spawnSync(process.execPath, ['kernel', 'release', '--config', stillUsed, '--out', outDir, '--upfrom', '0.4.0'], { cwd: repo, encoding: 'utf8', timeout: 120_000, env: { ...process.env, THESEUS_ROOT: '' } });
  assert.equal(refused.status, 1, refused.stderr + refused.stdout);
  assert.match(refused.stderr, /removes 'audit', but sequence still uses it.*\[E_REMOVED_STILL_USED\]/s);
});

test('a SIGKILL after an add: the restart comes back on the permanent release, with its services', async () => {
  // On trial: the restart reverts to the permanent 0.3.0, without the audit log.
  cli('upgrade', '0.4.0', '--no-commit');
  assert.deepEqual(serviceNames(), ['audit', 'sequence']);
  await killAndWait(Number(cli('pid').trim()));
  cli('start');
  let now = status();
  assert.equal(now.release, '0.3.0');
  assert.deepEqual(serviceNames(), ['sequence']);

  // Committed: the restart boots 0.4.0 with both, the audit log from its checkpoint.
  cli('upgrade', '0.4.0');
  const connection = await ControlConnection.open(deploy);
  const { reply } = (await connection.request('call', { service: 'sequence', method: 'nextNumber', args: [] })) as { reply: unknown };
  const handedOut = parseSequenceReply(reply);
  await waitUntil('the audit log to record that number', async () => ((await connection.request('call', { service: 'audit', method: 'auditLog', args: [] })) as { reply: AuditState }).reply.last === handedOut);
  await connection.request('call', { service: 'audit', method: 'auditLog', args: [] });
  connection.close();
  await killAndWait(Number(cli('pid').trim()));
  cli('start');
  now = status();
  assert.equal(now.release, '0.4.0');
  assert.equal(now.permanent, '0.4.0');
  assert.deepEqual(serviceNames(), ['audit', 'sequence']);
  const after = await ControlConnection.open(deploy);
  const next = parseSequenceReply(((await after.request('call', { service: 'sequence', method: 'nextNumber', args: [] })) as { reply: unknown }).reply);
  assert.ok(next > handedOut, `the sequence resumed above ${handedOut} (got ${next})`);
  const log = ((await after.request('call', { service: 'audit', method: 'auditLog', args: [] })) as { reply: AuditState }).reply;
  assert.ok(log.first !== null && log.count > 0, `the audit log resumed from its checkpoint: ${JSON.stringify(log)}`);
  after.close();
});
