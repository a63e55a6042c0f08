// `kernel systemd-unit`: the unit's text, `systemd-analyze verify` on it where systemd's tools are
// installed, and its command run the way systemd runs it (its Environment=, WorkingDirectory= and
// ExecStart=, then SIGTERM to the main process alone, as KillMode=mixed does): the kernel serves,
// answers health "draining" for the grace, and exits 0 well within TimeoutStopSec. systemd itself
// does not run in the tests' containers.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { extract } from 'tar';
import { buildRelease } from '../../kernel/release/build.ts';
import { exampleConfig, tempDir } from '../release/helpers.ts';

const dirs: string[] = [];
async function temp(prefix: string): Promise<string> {
  const dir = await tempDir(prefix);
  dirs.push(dir);
  return dir;
}
const built = temp('theseus-unit-').then((dir) => buildRelease({ configFile: exampleConfig('0.1.0'), outDir: join(dir, 'releases'), log: () => undefined }));
const children: Array<ReturnType<typeof spawn>> = [];
after(async () => {
  children.forEach((child) => child.exitCode === null && child.kill('SIGKILL'));
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

async function deployRoot(): Promise<string> {
  const root = await temp('theseus-unit-root-');
  await extract({ file: (await built).tarball, cwd: root });
  return root;
}

function cli(root: string, ...args: string[]) {
  return spawnSync(join(root, 'bin', 'kernel'), args, { cwd: root, encoding: 'utf8', env: { PATH: `${join(process.execPath, '..')}:/usr/bin:/bin` } });
}

/** The unit's settings, by key; keys that repeat (Environment=) keep every value. */
function settings(unit: string): Map<string, string[]> {
  const map = new Map<string, string[]>();
  for (const line of unit.split('\n')) {
    const match = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (match) map.set(match[1]!, [...(map.get(match[1]!) ?? []), match[2]!]);
  }
  return map;
}

test('kernel systemd-unit prints a unit that runs bin/kernel foreground as the user, from the deploy root, draining on stop', async () => {
  const root = await deployRoot();
  const result = cli(root, 'systemd-unit', '--user', 'root', '--stop-grace-ms', '4500');
  assert.equal(result.status, 0, result.stderr);
  const unit = settings(result.stdout);
  assert.deepEqual(unit.get('ExecStart'), [`${root}/bin/kernel foreground`]);
  assert.deepEqual(unit.get('WorkingDirectory'), [root]);
  assert.deepEqual(unit.get('User'), ['root']);
  assert.deepEqual(unit.get('Type'), ['exec']);
  assert.deepEqual(unit.get('KillMode'), ['mixed']);
  assert.deepEqual(unit.get('KillSignal'), ['SIGTERM']);
  // The grace (5 s, rounded up) plus the minute a stop may take.
  assert.deepEqual(unit.get('TimeoutStopSec'), ['65']);
  assert.deepEqual(unit.get('Restart'), ['on-failure']);
  assert.deepEqual(unit.get('Environment'), [`THESEUS_ROOT=${root}`, `THESEUS_NODE=${process.execPath}`, 'THESEUS_STOP_GRACE_MS=4500']);
  assert.equal(unit.has('ExecReload'), false, 'no reload: configuration ships in releases');
  assert.deepEqual(unit.get('WantedBy'), ['multi-user.target']);
  assert.match(result.stdout, /^Description=Theseus kernel: sequence \(/m);

  // systemd's own parser, where Debian's systemd package is installed.
  const analyze = spawnSync('sh', ['-c', 'command -v systemd-analyze'], { encoding: 'utf8' });
  if (analyze.status !== 0) {
    process.stdout.write('# systemd-analyze is not installed: the unit was checked by its text only\n');
    return;
  }
  const dir = await temp('theseus-unit-file-');
  const file = join(dir, 'theseus-sequence.service');
  await writeFile(file, result.stdout);
  const verify = spawnSync('systemd-analyze', ['verify', file], { encoding: 'utf8' });
  assert.equal(verify.status, 0, verify.stderr);
  // verify exits 0 on settings it ignores; it names the file in every complaint.
  assert.equal(verify.stderr.split('\n').filter((line) => line.includes('theseus-sequence.service')).join('\n'), '');
});

test('kernel systemd-unit refuses what a unit cannot hold, and a folder that is no deploy root', async () => {
  const root = await deployRoot();
  const spaced = join(await temp('theseus-unit-'), 'a folder');
  await mkdir(spaced);
  const notRoot = cli(root, 'systemd-unit', '--root', spaced);
  assert.equal(notRoot.status, 1);
  assert.match(notRoot.stderr, /\[E_NOT_A_DEPLOY_ROOT\]/);
  const user = cli(root, 'systemd-unit', '--user', 'root\nExecStartPre=/bin/evil');
  assert.equal(user.status, 1);
  assert.match(user.stderr, /\[E_SYSTEMD_UNIT_VALUE\]/);
  const node = cli(root, 'systemd-unit', '--node', '/opt/my node/bin/node');
  assert.equal(node.status, 1);
  assert.match(node.stderr, /--node .*no spaces.*\[E_SYSTEMD_UNIT_VALUE\]/);
  const grace = cli(root, 'systemd-unit', '--stop-grace-ms', 'soon');
  assert.equal(grace.status, 2);
  const tooLong = cli(root, 'systemd-unit', '--stop-grace-ms', String(3_600_000));
  assert.match(tooLong.stderr, /\[E_STOP_GRACE_INVALID\]/);
  const help = cli(root, 'systemd-unit', '--help');
  assert.equal(help.status, 0);
  assert.match(help.stdout, /--stop-grace-ms/);
});

test("the unit's command, run as systemd runs it: serves, then on SIGTERM answers health 'draining' for the grace and exits 0", async () => {
  const root = await deployRoot();
  const unit = settings(cli(root, 'systemd-unit', '--user', 'root', '--stop-grace-ms', '1500').stdout);
  const env = Object.fromEntries(unit.get('Environment')!.map((pair) => [pair.slice(0, pair.indexOf('=')), pair.slice(pair.indexOf('=') + 1)]));
  const [command, ...args] = unit.get('ExecStart')![0]!.split(' ');
  // systemd's environment for a service: its Environment= lines and a plain PATH, nothing else.
  const child = spawn(command!, args, { cwd: unit.get('WorkingDirectory')![0], env: { ...env, PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  while (!output.includes('kernel ready') && child.exitCode === null) await new Promise((resolve) => setTimeout(resolve, 20));
  assert.match(output, /kernel ready: sequence 0\.1\.0/);
  const status = JSON.parse(cli(root, 'status', '--json').stdout) as { http: { listeners: Array<{ port: number }> }; health: { status: string } };
  assert.equal(status.health.status, 'ok');
  const url = `http://127.0.0.1:${status.http.listeners[0]!.port}`;
  assert.equal((await fetch(`${url}/_theseus/health`)).status, 200);

  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  // KillMode=mixed: SIGTERM to the main process only.
  child.kill('SIGTERM');
  let draining = 0;
  let served = 0;
  for (;;) {
    const health = await fetch(`${url}/_theseus/health`).catch(() => null);
    if (!health) break;
    const body = (await health.json()) as { status: string };
    if (health.status === 503 && body.status === 'draining') draining++;
    // The release's routes still answer while the balancer takes the host out.
    if ((await fetch(`${url}/next`).catch(() => null))?.status === 200) served++;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.ok(draining > 0, 'health answered 503 draining before the listener closed');
  assert.ok(served > 0, 'requests were still served while draining');
  assert.equal(await exited, 0, output);
  assert.match(output, /kernel stopped/);
});
