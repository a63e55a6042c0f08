// The state survives the kernel: a clean stop and start, and a SIGKILL of the whole kernel.
// Driven through the real CLI; calls go over the control socket as the console's do.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { extract } from 'tar';
import { request } from '../../kernel/cli/control-client.ts';
import { killAndWait } from '../helpers.ts';
import { sharedExamples, tempDir } from '../release/helpers.ts';

const built = sharedExamples();
const roots: string[] = [];

function cli(root: string, ...args: string[]) {
  return spawnSync(join(root, 'bin', 'kernel'), args, { cwd: root, encoding: 'utf8', timeout: 60_000 });
}

after(() => {
  for (const root of roots) cli(root, 'stop');
});

async function deployRoot(): Promise<string> {
  const { results } = await built;
  const root = await tempDir('theseus-durable-');
  await extract({ file: results[0]!.tarball, cwd: root });
  roots.push(root);
  return root;
}

const next = async (root: string) => ((await request(root, 'call', { service: 'sequence', method: 'nextNumber', args: [] })) as { reply: number }).reply;

test('kernel stop, then kernel start: the sequence continues where it left off', async () => {
  const root = await deployRoot();
  assert.equal(cli(root, 'start').status, 0);
  let last = 0;
  for (let i = 0; i < 20; i++) last = await next(root);
  assert.equal(last, 475);
  assert.equal(cli(root, 'stop').status, 0);
  assert.equal(cli(root, 'start').status, 0);
  assert.equal(await next(root), 476);
  assert.equal(cli(root, 'stop').status, 0);
});

test('after a SIGKILL of the kernel, kernel start resumes just past the last number handed out (the example runs in durability reply)', async () => {
  const root = await deployRoot();
  assert.equal(cli(root, 'start').status, 0);
  const pid = Number(cli(root, 'pid').stdout.trim());
  let last = 0;
  for (let i = 0; i < 55; i++) last = await next(root);
  await killAndWait(pid);
  const restarted = cli(root, 'start');
  assert.equal(restarted.status, 0, restarted.stderr);
  // Every number answered was on disk before its answer left, and nothing else happened since.
  assert.equal(await next(root), last + 1);
  assert.equal(cli(root, 'stop').status, 0);
});
