// GET /_theseus/health on the front door of a real daemon: answered by the kernel (200 "ok" with
// the release), and 503 "draining" from the moment `kernel stop` begins, for the stop grace,
// while the release's routes keep serving; only then do the listeners close.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { Agent } from 'node:http';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { extract } from 'tar';
import { buildRelease } from '../../kernel/release/build.ts';
import { exampleConfig, tempDir } from '../release/helpers.ts';
import { send } from './helpers.ts';

const dirs: string[] = [];
const built = tempDir('theseus-health-').then((dir) => {
  dirs.push(dir);
  return buildRelease({ configFile: exampleConfig('0.1.0'), outDir: join(dir, 'releases'), log: () => undefined });
});

async function deployRoot(): Promise<string> {
  const root = await tempDir('theseus-health-root-');
  dirs.push(root);
  await extract({ file: (await built).tarball, cwd: root });
  return root;
}

const bare = (extra: Record<string, string> = {}) => ({ PATH: `${join(process.execPath, '..')}:/usr/bin:/bin`, ...extra });

function cli(root: string, args: string[], env: Record<string, string> = {}) {
  return spawnSync(join(root, 'bin', 'kernel'), args, { cwd: root, encoding: 'utf8', env: bare(env) });
}

after(async () => {
  for (const root of dirs) {
    cli(root, ['stop']);
    await rm(root, { recursive: true, force: true });
  }
});

interface Health {
  status: string;
  release: string;
  pid: number;
  stopGraceMs: number;
}

test("health answers 200 'ok' with the release, is not counted as traffic, and takes GET and HEAD only", async () => {
  const root = await deployRoot();
  assert.equal(cli(root, ['start'], { THESEUS_STOP_GRACE_MS: '250' }).status, 0);
  const status = JSON.parse(cli(root, ['status', '--json']).stdout) as { pid: number; http: { listeners: Array<{ port: number }> } };
  const port = status.http.listeners[0]!.port;
  const health = await send(port, 'GET', '/_theseus/health');
  assert.equal(health.status, 200);
  assert.equal(health.headers['cache-control'], 'no-store');
  assert.deepEqual({ ...health.json<Health & { uptimeMs: number }>(), uptimeMs: 0 }, { status: 'ok', release: '0.1.0', pid: status.pid, stopGraceMs: 250, uptimeMs: 0 });
  assert.equal((await send(port, 'GET', '/_theseus/health?from=balancer')).status, 200);
  assert.equal((await send(port, 'HEAD', '/_theseus/health')).status, 200);
  const post = await send(port, 'POST', '/_theseus/health', { body: '{}' });
  assert.equal(post.status, 405);
  assert.equal(post.headers.allow, 'GET, HEAD');
  assert.equal((await send(port, 'GET', '/next')).status, 200);
  const after = JSON.parse(cli(root, ['status', '--json']).stdout) as { http: { requests: number }; health: Health };
  assert.equal(after.http.requests, 1, 'only GET /next counts as a request');
  assert.equal(after.health.status, 'ok');
  assert.equal(cli(root, ['stop']).status, 0);
});

test("from the moment kernel stop begins, health answers 503 'draining' for the grace while the routes still serve; then the listener closes", async () => {
  const root = await deployRoot();
  assert.equal(cli(root, ['start'], { THESEUS_STOP_GRACE_MS: '1500' }).status, 0);
  const port = (JSON.parse(cli(root, ['status', '--json']).stdout) as { http: { listeners: Array<{ port: number }> } }).http.listeners[0]!.port;
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  assert.equal((await send(port, 'GET', '/next', { agent })).status, 200);

  const stop = spawn(join(root, 'bin', 'kernel'), ['stop'], { cwd: root, env: bare(), stdio: ['ignore', 'pipe', 'pipe'] });
  let stopOutput = '';
  stop.stdout.on('data', (chunk: Buffer) => (stopOutput += chunk.toString()));
  const stopped = new Promise<number | null>((resolve) => stop.on('close', resolve));

  const seen: string[] = [];
  let servedWhileDraining = 0;
  let statusSaidDraining = false;
  for (;;) {
    const health = await send(port, 'GET', '/_theseus/health').catch(() => null);
    if (!health) break;
    const body = health.json<Health>();
    if (seen.at(-1) !== `${health.status} ${body.status}`) seen.push(`${health.status} ${body.status}`);
    if (health.status === 503) {
      assert.equal(health.headers.connection, 'close');
      if ((await send(port, 'GET', '/next', { agent }).catch(() => null))?.status === 200) servedWhileDraining++;
      if (!statusSaidDraining) statusSaidDraining = (JSON.parse(cli(root, ['status', '--json']).stdout || '{}') as { health?: Health }).health?.status === 'draining';
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  agent.destroy();
  assert.equal(await stopped, 0);
  // ok until the stop began, draining after, and never ok again.
  assert.deepEqual(seen.at(-1), '503 draining', seen.join(', '));
  assert.ok(!seen.slice(seen.indexOf('503 draining')).includes('200 ok'), seen.join(', '));
  assert.ok(servedWhileDraining > 0, 'GET /next was served during the grace');
  assert.ok(statusSaidDraining, 'kernel status --json said draining');
  assert.match(stopOutput, /Draining: health answers 503 for 1500 ms/);
});

test('a stop grace that is not a whole number of milliseconds refuses to start the kernel, naming the variable', async () => {
  const root = await deployRoot();
  const result = cli(root, ['start'], { THESEUS_STOP_GRACE_MS: '2s' });
  assert.equal(result.status, 1);
  assert.match(`${result.stdout}${result.stderr}`, /THESEUS_STOP_GRACE_MS='2s'.*\[E_STOP_GRACE_INVALID\]/s);
});
