// The kernel as a program, driven through the real CLI as a subprocess in temporary deploy roots
// unpacked from real release tarballs.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { extract } from 'tar';
import { send } from '../../kernel/cli/control-client.ts';
import { hasExited, killAndWait, runAsync, swapJson, waitUntil } from '../helpers.ts';
import { sharedExamples, tempDir } from '../release/helpers.ts';
import { buildSequenceVariant } from './variants.ts';

const built = sharedExamples();
const roots: string[] = [];

async function deployRoot(): Promise<string> {
  const { results } = await built;
  const root = await tempDir('theseus-daemon-');
  await extract({ file: results[0]!.tarball, cwd: root });
  roots.push(root);
  return root;
}

/** The deploy root's CLI, without blocking this process: the cases below run side by side. */
function cli(root: string, ...args: string[]) {
  return runAsync(join(root, 'bin', 'kernel'), args, { cwd: root, env: { ...process.env, THESEUS_ROOT: '' } });
}

after(async () => {
  // Never leave a kernel behind, whatever failed.
  await Promise.all(roots.map((root) => cli(root, 'stop')));
});

async function auditOps(root: string): Promise<Array<{ op: string; outcome: string; from: string | null; to: string | null; phase?: string; code?: string; hashes: Record<string, string>; uid: number; user: string; durations?: Record<string, number> }>> {
  const text = await readFile(join(root, 'var', 'audit.jsonl'), 'utf8');
  return text.trim().split('\n').map((line) => JSON.parse(line));
}

/** A one-service release of the sequence app at `version`, with no front door. */
function buildVariant(version: string, serviceSource: string, probationMs: number) {
  return buildSequenceVariant(version, serviceSource, `probationMs: ${probationMs}`, { http: false });
}

// Each case has its own deploy root, kernel, socket and ports, so several run at once: most of a
// case is waiting on the CLI and kernel processes it starts.
describe('the daemon through the CLI', { concurrency: 4 }, () => {
  test('start, status, upgrade to 0.2.0, downgrade to 0.1.0, upgrade to 0.3.0, stop: all from the command line', async () => {
    const { results } = await built;
    const root = await deployRoot();
    const started = await cli(root, 'start');
    assert.equal(started.status, 0, started.stderr + started.stdout);
    assert.match(started.stdout, /Kernel started: pid (\d+), release 0\.1\.0/);
    const pid = Number(/pid (\d+)/.exec(started.stdout)![1]);

    const status = await cli(root, 'status', '--json');
    assert.equal(status.status, 0, status.stderr);
    const parsed = JSON.parse(status.stdout) as { pid: number; release: string; services: Array<{ name: string; vsn: string; state: string; release: string }> };
    assert.equal(parsed.pid, pid);
    assert.equal(parsed.release, '0.1.0');
    assert.deepEqual(parsed.services.map((s) => [s.name, s.state, s.release, s.vsn]), [['sequence', 'running', '0.1.0', '0']]);

    const up = await cli(root, 'upgrade', results[1]!.tarball);
    assert.equal(up.status, 0, up.stderr + up.stdout);
    // Every phase, in order, each with its time, as it ended.
    const printed = [...up.stdout.matchAll(/^  (\w+)\s+[\d.]+ ms/gm)].map((match) => match[1]);
    assert.deepEqual(printed, ['check', 'prepare', 'suspend', 'migrate', 'switch', 'probation', 'commit']);
    assert.match(up.stdout, /sequence: 0\.1\.0 \(vsn 0\) -> 0\.2\.0 \(vsn 0\), migration none, state \d+ bytes, pause [\d.]+ ms, switched/);

    const down = await cli(root, 'downgrade', '0.1.0', '--json');
    assert.equal(down.status, 0, down.stderr + down.stdout);
    const downResult = swapJson(down.stdout) as { ok: boolean; from: string; to: string; committed: boolean; steps: Array<{ phase: string; ms: number }> };
    assert.deepEqual([downResult.ok, downResult.from, downResult.to, downResult.committed], [true, '0.2.0', '0.1.0', true]);
    assert.deepEqual(downResult.steps.map((s) => s.phase), ['check', 'prepare', 'suspend', 'migrate', 'switch', 'probation', 'commit']);

    const third = await cli(root, 'upgrade', results[2]!.dir);
    assert.equal(third.status, 0, third.stderr + third.stdout);
    assert.match(third.stdout, /migration 0 -> 1 \(up, in 0\.3\.0\)/);
    assert.equal(JSON.parse((await cli(root, 'status', '--json')).stdout).services[0].vsn, '1');
    assert.equal((await cli(root, 'pid')).stdout.trim(), String(pid), 'the same kernel process throughout');

    const releases = JSON.parse((await cli(root, 'releases', '--json')).stdout) as Array<{ version: string; status: string; running: boolean }>;
    assert.deepEqual(releases.map((r) => [r.version, r.status, r.running]), [['0.1.0', 'old', false], ['0.2.0', 'old', false], ['0.3.0', 'permanent', true]]);

    const stopped = await cli(root, 'stop');
    assert.equal(stopped.status, 0, stopped.stderr);
    assert.ok(await hasExited(pid), 'the kernel process has exited');
    await assert.rejects(stat(join(root, 'var', 'kernel.sock')), 'the socket was removed');

    const audit = await auditOps(root);
    assert.deepEqual(audit.map((e) => [e.op, e.from, e.to, e.outcome]), [
      ['start', null, '0.1.0', 'ok'],
      ['install', null, '0.2.0', 'ok'],
      ['upgrade', '0.1.0', '0.2.0', 'ok'],
      ['downgrade', '0.2.0', '0.1.0', 'ok'],
      ['install', null, '0.3.0', 'ok'],
      ['upgrade', '0.1.0', '0.3.0', 'ok'],
      ['stop', '0.3.0', null, 'ok'],
    ]);
    for (const entry of audit) {
      assert.equal(typeof entry.uid, 'number');
      assert.ok(entry.user);
    }
    assert.match(audit[2]!.hashes['0.2.0']!, /^[0-9a-f]{64}$/);
    assert.deepEqual(Object.keys(audit[2]!.durations ?? {}), ['check', 'prepare', 'suspend', 'migrate', 'switch', 'probation', 'commit'], 'the upgrade entry holds each phase\'s time');

    // Every line of the kernel's log carries service, release and pid.
    const log = (await readFile(join(root, 'var', 'log', 'kernel.log'), 'utf8')).trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
    assert.ok(log.length > 0);
    for (const line of log) for (const field of ['service', 'release', 'pid']) assert.ok(field in line, `log line without ${field}: ${JSON.stringify(line)}`);
    assert.ok(log.some((line) => line.service === 'sequence' && line.release === '0.3.0' && line.msg === 'Changing code from 0 to 1'));
    const logs = await cli(root, 'logs', '-n', '3');
    assert.equal(logs.status, 0);
    assert.equal(logs.stdout.trim().split('\n').length, 3);
  });

  test('--no-commit leaves the release on trial; a restart comes back on the permanent release; commit makes it stick', async () => {
    const { results } = await built;
    const root = await deployRoot();
    assert.equal((await cli(root, 'start')).status, 0);
    const trial = await cli(root, 'upgrade', results[1]!.tarball, '--no-commit');
    assert.equal(trial.status, 0, trial.stderr);
    assert.match(trial.stdout, /on trial/);
    assert.equal(JSON.parse((await cli(root, 'status', '--json')).stdout).release, '0.2.0');
    assert.equal((await cli(root, 'stop')).status, 0);
    const restarted = await cli(root, 'start');
    assert.equal(restarted.status, 0, restarted.stderr);
    assert.match(restarted.stdout, /release 0\.1\.0/, 'the trial release reverted on restart');

    assert.equal((await cli(root, 'upgrade', '0.2.0', '--no-commit')).status, 0);
    const committed = await cli(root, 'commit');
    assert.equal(committed.status, 0, committed.stderr);
    assert.match(committed.stdout, /Made release permanent: 0\.2\.0/);
    const again = await cli(root, 'commit');
    assert.equal(again.status, 1);
    assert.match(again.stderr, /\[E_NOTHING_TO_COMMIT\]/);
    assert.equal((await cli(root, 'stop')).status, 0);
    assert.match((await cli(root, 'start')).stdout, /release 0\.2\.0/);
    assert.equal((await cli(root, 'stop')).status, 0);
    const ops = (await auditOps(root)).map((e) => e.op);
    assert.ok(ops.includes('commit'));
  });

  test('a failed upgrade names its phase, exits non-zero, keeps the old release and is audited', async () => {
    const { results } = await built;
    const root = await deployRoot();
    assert.equal((await cli(root, 'start')).status, 0);
    // A release whose bundle was changed after the build.
    const { cp } = await import('node:fs/promises');
    const tampered = await tempDir('theseus-tampered-');
    await cp(results[1]!.dir, tampered, { recursive: true });
    await writeFile(join(tampered, 'services/sequence/sequence.mjs'), 'export default {}');
    const refused = await cli(root, 'upgrade', tampered);
    assert.equal(refused.status, 1);
    assert.match(refused.stderr, /^kernel upgrade: failed in phase 'check': .*sequence\.mjs does not match the manifest.*\[E_RELEASE_HASH_MISMATCH\]$/m);
    assert.equal(refused.stderr.trim().split('\n').length, 1, 'one line, no stack trace');
    // Downgrading to a version that is not installed.
    const unknown = await cli(root, 'downgrade', '0.0.9');
    assert.equal(unknown.status, 1);
    assert.match(unknown.stderr, /\[E_RELEASE_NOT_INSTALLED\]/);
    const json = await cli(root, 'upgrade', tampered, '--json');
    assert.equal(json.status, 1);
    const failed = swapJson(json.stdout) as { ok: boolean; error: { code: string; phase: string } };
    assert.deepEqual([failed.ok, failed.error.code, failed.error.phase], [false, 'E_RELEASE_HASH_MISMATCH', 'check']);
    assert.equal(JSON.parse((await cli(root, 'status', '--json')).stdout).release, '0.1.0');
    const audit = await auditOps(root);
    assert.ok(audit.some((e) => e.op === 'upgrade' && e.outcome === 'failed' && e.code === 'E_RELEASE_HASH_MISMATCH' && e.phase === 'check'));
    assert.equal((await cli(root, 'stop')).status, 0);
  });

  test('the control socket: owner-only, cookie required, bad frames refused, the kernel stays up', async () => {
    const root = await deployRoot();
    assert.equal((await cli(root, 'start')).status, 0);
    const socketPath = join(root, 'var', 'kernel.sock');
    assert.equal((await stat(socketPath)).mode & 0o777, 0o600);
    assert.equal((await stat(join(root, 'var', 'cookie'))).mode & 0o777, 0o600);
    assert.equal((await stat(join(root, 'var'))).mode & 0o777, 0o700);

    const cookie = (await readFile(join(root, 'var', 'cookie'), 'utf8')).trim();
    // Wrong cookies of the right length (one character changed, first or last), so a check that
    // compared only lengths, or stopped early, would let them through; then no cookie at all.
    const flip = (c: string) => (c === 'a' ? 'b' : 'a');
    const wrongCookies: unknown[] = [flip(cookie[0]!) + cookie.slice(1), cookie.slice(0, -1) + flip(cookie.at(-1)!), `${cookie} `, 'not-the-cookie', 42, null];
    for (const [index, wrong] of wrongCookies.entries()) {
      await assert.rejects(send(socketPath, { v: 1, cookie: wrong, id: 7, op: 'stop', args: {} }, 'stop', root), { code: 'E_BAD_COOKIE' }, `cookie #${index}`);
    }
    await assert.rejects(send(socketPath, { v: 1, id: 7, op: 'stop', args: {} }, 'stop', root), { code: 'E_BAD_COOKIE' }, 'no cookie');
    assert.equal((await cli(root, 'ping')).status, 0, 'none of them stopped the kernel');
    await assert.rejects(send(socketPath, { v: 1, cookie, id: 8, op: 'format-disk', args: {} }, 'format-disk', root), { code: 'E_FRAME_INVALID' });
    await assert.rejects(send(socketPath, { v: 1, cookie, id: 9, op: 'upgrade', args: { source: 42, commit: true } }, 'upgrade', root), { code: 'E_FRAME_INVALID' });
    // A frame that claims to be huge is refused before it is read.
    const huge = Buffer.alloc(4);
    huge.writeUInt32BE(512 * 1024 * 1024, 0);
    await assert.rejects(send(socketPath, huge, 'huge', root), { code: 'E_FRAME_TOO_LARGE' });
    // Garbage that is not JSON.
    const garbage = Buffer.concat([Buffer.from([0, 0, 0, 5]), Buffer.from('{{{{{')]);
    await assert.rejects(send(socketPath, garbage, 'garbage', root), { code: 'E_FRAME_INVALID' });
    // A client that connects and says nothing does not block others.
    const idle = connect(socketPath);
    assert.equal((await cli(root, 'ping')).status, 0, 'the kernel still answers');
    idle.destroy();
    assert.equal((await cli(root, 'stop')).status, 0);
  });

  test('a second start is refused; a stale pid file and socket from a dead kernel are cleaned up', async () => {
    const root = await deployRoot();
    const first = await cli(root, 'start');
    assert.equal(first.status, 0);
    const second = await cli(root, 'start');
    assert.equal(second.status, 1);
    assert.match(second.stderr, /already running .*\(pid \d+\).*\[E_ALREADY_RUNNING\]/);
    const pid = Number((await cli(root, 'pid')).stdout.trim());
    // Kill it so hard that it cannot clean up after itself.
    await killAndWait(pid);
    assert.ok((await stat(join(root, 'var', 'kernel.pid'))).isFile(), 'the pid file was left behind');
    const ping = await cli(root, 'ping');
    assert.equal(ping.status, 1);
    assert.match(ping.stderr, /No kernel is running/);
    const restarted = await cli(root, 'start');
    assert.equal(restarted.status, 0, restarted.stderr);
    assert.match(restarted.stdout, /stale pid file/);
    assert.equal((await cli(root, 'stop')).status, 0);
  });

  test('with no kernel running, every verb says so in one line and none hangs', async () => {
    const root = await deployRoot();
    for (const args of [['ping'], ['pid'], ['status'], ['stop'], ['commit'], ['upgrade', '0.2.0'], ['downgrade', '0.1.0']]) {
      const result = await cli(root, ...args);
      assert.equal(result.status, 1, `${args.join(' ')}: ${result.stderr}`);
      assert.match(result.stderr, /No kernel is running in .*\[E_KERNEL_NOT_RUNNING\]/, args.join(' '));
      assert.equal(result.stderr.trim().split('\n').length, 1);
    }
    // These work without a kernel.
    assert.equal((await cli(root, 'releases')).status, 0);
    assert.equal((await cli(root, 'logs')).status, 0);
  });

  test('probation: a new release whose health check fails is reverted automatically, with its state carried back', async () => {
    // Release 0.2.1 of the sequence app: the 0.2.0 code, plus a health check that always fails.
    const unhealthy = await buildVariant(
      '0.2.1',
      `export default defineService({
  vsn: '0',
  init: () => 456,
  calls: { nextNumber: ({ state }) => ({ reply: \`The next number is \${state}\`, state: state + 1 }) },
  casts: { incrementNumber: ({ state }, delta: number) => ({ state: state + delta }) },
  health: ({ state }) => \`cannot reach the ledger (at \${state})\`,
});
`,
      500,
    );

    const root = await deployRoot();
    assert.equal((await cli(root, 'start')).status, 0);
    const { request } = await import('../../kernel/cli/control-client.ts');
    const next = async () => ((await request(root, 'call', { service: 'sequence', method: 'nextNumber', args: [] })) as { reply: number | string }).reply;
    // Move the state away from what init() gives, so a revert that restarted from init() shows.
    for (let i = 0; i < 10; i++) await next();
    const result = await cli(root, 'upgrade', unhealthy.tarball);
    assert.equal(result.status, 1, result.stdout);
    assert.match(result.stdout, /probation .*sequence unhealthy: cannot reach the ledger \(at 466\); Reverted to 0\.1\.0, with the state carried back/);
    assert.match(result.stderr, /failed in phase 'probation'.*\[E_PROBATION_FAILED\]/);
    const status = JSON.parse((await cli(root, 'status', '--json')).stdout) as { release: string; permanent: string; services: Array<{ release: string }> };
    assert.deepEqual([status.release, status.permanent, status.services[0]!.release], ['0.1.0', '0.1.0', '0.1.0']);
    // The state came back down: 0.1.0 goes on from where 0.2.1 was, not from init().
    assert.equal(await next(), 466);
    const audit = await auditOps(root);
    assert.ok(audit.some((e) => e.op === 'rollback' && e.outcome === 'ok' && e.phase === 'probation'));
    assert.ok(audit.some((e) => e.op === 'upgrade' && e.to === '0.2.1' && e.outcome === 'rolled-back' && e.phase === 'probation'));
    assert.equal((await cli(root, 'stop')).status, 0);
  });

  test('probation: a new worker that crashes is held, not restarted, and the upgrade is reverted with every answered change carried down, and audited', async () => {
    const { spawn } = await import('node:child_process');
    const { request } = await import('../../kernel/cli/control-client.ts');
    // Release 0.2.2: the 0.1.0 code, plus a call that crashes the worker.
    const crashy = await buildVariant(
      '0.2.2',
      `export default defineService({
  vsn: '0',
  init: () => 456,
  calls: {
    nextNumber: ({ state }) => ({ reply: state, state: state + 1 }),
    armCrash: ({ state }) => { setTimeout(() => process.exit(3), 10); return { reply: state }; },
  },
  casts: { incrementNumber: ({ state }, delta: number) => ({ state: state + delta }) },
});
`,
      4000,
    );

    const root = await deployRoot();
    assert.equal((await cli(root, 'start')).status, 0);
    const next = async () => ((await request(root, 'call', { service: 'sequence', method: 'nextNumber', args: [] })) as { reply: number }).reply;
    for (let i = 0; i < 10; i++) await next();
    const upgrade = spawn(join(root, 'bin', 'kernel'), ['upgrade', crashy.tarball], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    upgrade.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    upgrade.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => upgrade.once('exit', resolve));
    // Once the new code serves (probation has begun), make it crash.
    await waitUntil('the upgrade to print its switch', () => /switch/.test(output));
    // Numbers handed out by the new code, then the crash.
    for (let i = 0; i < 5; i++) assert.equal(await next(), 466 + i);
    await request(root, 'call', { service: 'sequence', method: 'armCrash', args: [] });
    assert.equal(await exited, 1, output);
    assert.match(output, /sequence unhealthy: its worker crashed during probation \(exit code 3\); Reverted to 0\.1\.0/);
    const status = JSON.parse((await cli(root, 'status', '--json')).stdout) as { release: string; permanent: string };
    assert.deepEqual([status.release, status.permanent], ['0.1.0', '0.1.0']);
    // Carried down from the crashed release, every answered change included (durability 'reply'):
    // neither init()'s 456 nor a number 0.2.2 had already handed out.
    assert.equal(await next(), 471);
    const audit = await auditOps(root);
    assert.ok(audit.some((e) => e.op === 'upgrade' && e.to === '0.2.2' && e.outcome === 'rolled-back' && e.phase === 'probation'), 'the upgrade is audited as rolled back');
    assert.ok(audit.some((e) => e.op === 'rollback' && e.outcome === 'ok' && e.phase === 'probation'), 'the revert is audited as done');
    assert.equal((await cli(root, 'stop')).status, 0);
  });

  test('a control connection from another uid is refused by the socket permissions', { skip: process.getuid?.() !== 0 ? 'needs root to act as another uid' : false }, async () => {
    const { chmod } = await import('node:fs/promises');
    const root = await deployRoot();
    assert.equal((await cli(root, 'start')).status, 0);
    try {
      // Let the other user reach var/ itself, so the socket's own mode (0600) is what refuses it.
      await chmod(root, 0o755);
      await chmod(join(root, 'var'), 0o755);
      const probe = spawnSync(
        process.execPath,
        ['-e', `const s = require('node:net').connect(${JSON.stringify(join(root, 'var', 'kernel.sock'))}); s.on('connect', () => { console.log('CONNECTED'); process.exit(0); }); s.on('error', (e) => { console.log(e.code); process.exit(0); });`],
        { uid: 65534, gid: 65534, encoding: 'utf8', timeout: 10_000 },
      );
      assert.equal(probe.stdout.trim(), 'EACCES', probe.stderr);
      // And the cookie cannot be read by that user either.
      const cookie = spawnSync(process.execPath, ['-e', `require('node:fs').readFileSync(${JSON.stringify(join(root, 'var', 'cookie'))})`], { uid: 65534, gid: 65534, encoding: 'utf8' });
      assert.notEqual(cookie.status, 0);
      assert.match(cookie.stderr, /EACCES/);
    } finally {
      await chmod(join(root, 'var'), 0o700);
      assert.equal((await cli(root, 'stop')).status, 0);
    }
  });

  for (const fault of [
    {
      name: 'the new worker throws at boot',
      version: '0.2.3',
      phase: 'prepare',
      code: 'E_BOOT_FAILED',
      // Throws only where a kernel runs it (bin/kernel sets THESEUS_ROOT), not while the release is built.
      source: `if (process.env.THESEUS_ROOT) throw new Error('cannot open the ledger');
export default defineService({ vsn: '0', init: () => 0, calls: { nextNumber: ({ state }) => ({ reply: state, state: state + 1 }) }, casts: { incrementNumber: ({ state }, d: number) => ({ state: state + d }) } });
`,
    },
    {
      name: 'the up migration throws',
      version: '0.2.4',
      phase: 'migrate',
      code: 'E_MIGRATION_FAILED',
      source: `export default defineService({ vsn: '1', init: () => ({ n: 0 }), calls: { nextNumber: ({ state }) => ({ reply: state.n, state: { n: state.n + 1 } }) }, casts: { incrementNumber: ({ state }) => ({ state }) },
  migrations: [{ from: '0', to: '1', up: () => { throw new Error('cannot read the old state'); }, down: (s: { n: number }) => s.n }] });
`,
    },
    {
      name: 'the up migration returns state that cannot be cloned',
      version: '0.2.5',
      phase: 'migrate',
      code: 'E_MIGRATION_BAD_STATE',
      source: `export default defineService({ vsn: '1', init: () => ({ n: 0 }), calls: { nextNumber: ({ state }) => ({ reply: state.n, state: { n: state.n + 1 } }) }, casts: { incrementNumber: ({ state }) => ({ state }) },
  migrations: [{ from: '0', to: '1', up: (n: number) => ({ n, format: () => n }), down: (s: { n: number }) => s.n }] });
`,
    },
  ]) {
    test(`from the command line, ${fault.name}: phase '${fault.phase}', the old release serves on, the audit records it`, async () => {
      const { request } = await import('../../kernel/cli/control-client.ts');
      const variant = await buildVariant(fault.version, fault.source, 0);
      const root = await deployRoot();
      assert.equal((await cli(root, 'start')).status, 0);
      const next = async () => ((await request(root, 'call', { service: 'sequence', method: 'nextNumber', args: [] })) as { reply: number }).reply;
      assert.equal(await next(), 456);
      const result = await cli(root, 'upgrade', variant.tarball);
      assert.equal(result.status, 1, result.stdout);
      assert.match(result.stderr, new RegExp(`^kernel upgrade: rolled back in phase '${fault.phase}': .*\\[${fault.code}\\]`));
      assert.equal(result.stderr.split('in phase').length, 2, 'the phase is said once');
      assert.equal(await next(), 457, 'the old release kept its state and serves on');
      assert.equal(JSON.parse((await cli(root, 'status', '--json')).stdout).release, '0.1.0');
      const audit = await auditOps(root);
      assert.ok(audit.some((e) => e.op === 'upgrade' && e.to === fault.version && e.outcome === 'rolled-back' && e.phase === fault.phase && e.code === fault.code));
      assert.equal((await cli(root, 'stop')).status, 0);
    });
  }

  test('from the command line, a down migration that throws: phase \'migrate\', the newer release serves on with its state, the audit records it', async () => {
    const { request } = await import('../../kernel/cli/control-client.ts');
    // Release 0.2.6: state vsn 1 ({ n }), reached from 0.1.0's bare number, with a down migration that throws.
    const variant = await buildVariant(
      '0.2.6',
      `export default defineService({ vsn: '1', init: () => ({ n: 456 }), calls: { nextNumber: ({ state }) => ({ reply: state.n, state: { n: state.n + 1 } }) }, casts: { incrementNumber: ({ state }) => ({ state }) },
  migrations: [{ from: '0', to: '1', up: (n: number) => ({ n }), down: () => { throw new Error('history cannot be folded back'); } }] });
`,
      0,
    );
    const root = await deployRoot();
    assert.equal((await cli(root, 'start')).status, 0);
    const next = async () => ((await request(root, 'call', { service: 'sequence', method: 'nextNumber', args: [] })) as { reply: number }).reply;
    assert.equal(await next(), 456);
    const up = await cli(root, 'upgrade', variant.tarball);
    assert.equal(up.status, 0, up.stderr + up.stdout);
    assert.equal(await next(), 457, 'the up migration carried the state');

    const down = await cli(root, 'downgrade', '0.1.0');
    assert.equal(down.status, 1, down.stdout);
    assert.match(down.stderr, /^kernel downgrade: rolled back in phase 'migrate': .*history cannot be folded back.*\[E_MIGRATION_FAILED\]/);
    assert.equal(await next(), 458, 'the newer release kept its state and serves on');
    assert.equal(JSON.parse((await cli(root, 'status', '--json')).stdout).release, '0.2.6');
    const audit = await auditOps(root);
    const failed = audit.filter((e) => e.op === 'downgrade');
    assert.deepEqual(
      failed.map((e) => [e.from, e.to, e.outcome, e.phase, e.code]),
      [['0.2.6', '0.1.0', 'rolled-back', 'migrate', 'E_MIGRATION_FAILED']],
      'one downgrade line: rolled back in migrate, with its code',
    );
    assert.equal((await cli(root, 'stop')).status, 0);
  });
});
