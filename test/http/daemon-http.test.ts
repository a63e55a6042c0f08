// The example app's HTTP front door in a real daemon (started from a real release tarball with its
// own bin/kernel), loaded by many keep-alive HTTP callers while the CLI upgrades and downgrades it.
// The sequence is the witness: every number is handed to exactly one response, in rising order
// per caller, with none missing; and the connections opened before the swaps are the ones that
// carry the requests after them.

import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, test } from 'node:test';
import { extract } from 'tar';
import { sharedExamples, tempDir } from '../release/helpers.ts';
import { CountingAgent, send } from './helpers.ts';

const run = promisify(execFile);
const built = sharedExamples();
const roots: string[] = [];

function cli(root: string, ...args: string[]) {
  return spawnSync(join(root, 'bin', 'kernel'), args, { cwd: root, encoding: 'utf8', timeout: 60_000, env: { ...process.env, THESEUS_ROOT: '' } });
}

/** The CLI without blocking this process's event loop, so the HTTP callers keep going. */
async function cliAsync(root: string, ...args: string[]): Promise<string> {
  const { stdout } = await run(join(root, 'bin', 'kernel'), args, { cwd: root, timeout: 60_000, env: { ...process.env, THESEUS_ROOT: '' } });
  return stdout;
}

after(() => {
  for (const root of roots) cli(root, 'stop');
});

test('GET /next and POST /increment stay up, exactly once and in order, across upgrades and downgrades', async () => {
  const { results } = await built;
  const tarball = (index: number) => results[index]!.tarball;
  const root = await tempDir('theseus-http-');
  roots.push(root);
  await extract({ file: tarball(0), cwd: root });
  const started = cli(root, 'start');
  assert.equal(started.status, 0, started.stderr + started.stdout);

  const status = JSON.parse(cli(root, 'status', '--json').stdout) as { http: { listeners: Array<{ port: number; routes: string[] }> } };
  const port = status.http.listeners[0]!.port;
  assert.deepEqual(status.http.listeners[0]!.routes, ['GET /next -> sequence.httpNext', 'POST /increment -> sequence.httpIncrement']);
  assert.match(cli(root, 'status').stdout, new RegExp(`http: http://127\\.0\\.0\\.1:${port} \\(2 routes\\)`));

  const SOCKETS = 12;
  const agent = new CountingAgent({ keepAlive: true, maxSockets: SOCKETS });
  const perCaller: number[][] = Array.from({ length: 36 }, () => []);
  const failures: string[] = [];
  let stopping = false;
  const callers = perCaller.map(async (numbers) => {
    while (!stopping) {
      const reply = await send(port, 'GET', '/next', { agent }).catch((error: Error) => ({ status: 0, error }) as const);
      if (reply.status !== 200 || !('json' in reply)) {
        failures.push('error' in reply ? reply.error.message : `status ${reply.status}`);
        continue;
      }
      numbers.push(reply.json<{ number: number }>().number);
    }
  });

  // The next reply after each swap returns comes from the new code.
  const releaseNow = async () => (await send(port, 'GET', '/next', { agent })).json<{ release: string }>().release;
  const swaps: Array<[string, string, string]> = [
    ['upgrade', tarball(1), '0.2.0'],
    ['upgrade', tarball(2), '0.3.0'],
    ['downgrade', '0.2.0', '0.2.0'],
    ['downgrade', '0.1.0', '0.1.0'],
    ['upgrade', '0.3.0', '0.3.0'],
    ['downgrade', '0.2.0', '0.2.0'],
  ];
  await new Promise((resolve) => setTimeout(resolve, 200));
  for (const [verb, source, release] of swaps) {
    await cliAsync(root, verb, source);
    assert.equal(await releaseNow(), release, `after ${verb} ${source}`);
  }
  await new Promise((resolve) => setTimeout(resolve, 200));
  stopping = true;
  await Promise.all(callers);

  assert.deepEqual(failures, []);
  // The two releaseNow() probes per swap took numbers too; everything else went to the callers.
  const all = perCaller.flat();
  for (const numbers of perCaller) for (let i = 1; i < numbers.length; i++) assert.ok(numbers[i]! > numbers[i - 1]!, 'rising per caller');
  const final = (await send(port, 'GET', '/next', { agent })).json<{ number: number }>().number;
  const seen = new Set(all);
  assert.equal(seen.size, all.length, 'no number was handed out twice');
  const missing = final - 456 - seen.size;
  assert.equal(missing, swaps.length, 'only the probes took numbers the callers did not see');
  assert.ok(all.length > 500, `the callers made ${all.length} requests`);
  assert.ok(agent.connections <= SOCKETS, `${agent.connections} connections for ${all.length} requests: the keep-alive sockets lived through the swaps`);

  // The seed's story over HTTP: 0.3.0 takes the step from POST /increment; 0.2.0 has no step.
  await cliAsync(root, 'upgrade', '0.3.0');
  const bad = await send(port, 'POST', '/increment', { agent, headers: { 'content-type': 'application/json' }, body: '{"delta":"three"}' });
  assert.equal(bad.status, 400);
  const set = await send(port, 'POST', '/increment', { agent, headers: { 'content-type': 'application/json' }, body: '{"delta":3}' });
  assert.deepEqual(set.json(), { delta: 3 });
  const a = (await send(port, 'GET', '/next', { agent })).json<{ number: number }>().number;
  const b = (await send(port, 'GET', '/next', { agent })).json<{ number: number }>().number;
  assert.equal(b - a, 3);
  await cliAsync(root, 'downgrade', '0.2.0');
  const c = (await send(port, 'GET', '/next', { agent })).json<{ number: number }>().number;
  const d = (await send(port, 'GET', '/next', { agent })).json<{ number: number }>().number;
  assert.equal(c, b + 3);
  assert.equal(d - c, 1);
  assert.equal((await send(port, 'DELETE', '/next', { agent })).status, 405);

  // Stopping with keep-alive connections open: the kernel still stops, and the port is let go.
  agent.destroy();
  const stopped = cli(root, 'stop');
  assert.equal(stopped.status, 0, stopped.stderr + stopped.stdout);
  await assert.rejects(send(port, 'GET', '/next'), /ECONNREFUSED/);
});
