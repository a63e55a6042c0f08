// kill -9 at random moments, under load, again and again. The example's sequence service runs in
// durability 'reply', so no number a client received may ever be handed out again: after every
// restart, the next number is above every number received before the kill.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { extract } from 'tar';
import { request } from '../../kernel/cli/control-client.ts';
import type { StatusResult } from '../../kernel/common/control-protocol.ts';
import { waitUntil } from '../helpers.ts';
import { startNextLoad } from '../http/helpers.ts';
import { sharedExamples, tempDir } from '../release/helpers.ts';

const KILLS = 50;
const CLIENTS = 8;

const built = sharedExamples();
const roots: string[] = [];

function cli(root: string, ...args: string[]) {
  return spawnSync(join(root, 'bin', 'kernel'), args, { cwd: root, encoding: 'utf8', timeout: 60_000, env: { ...process.env, THESEUS_ROOT: '' } });
}

after(() => {
  for (const root of roots) cli(root, 'stop');
});

/** The kernel's status once it answers (its HTTP port is only known then); fails after 30 s. */
async function readyStatus(root: string, pid: number): Promise<StatusResult> {
  let status: StatusResult | null = null;
  await waitUntil(`the kernel (pid ${pid}) to answer status`, async () => {
    // Not listening yet, or the previous kernel's socket: try again.
    status = (await request(root, 'status', {}, { timeoutMs: 2000 }).catch(() => null)) as StatusResult | null;
    return status?.pid === pid;
  });
  return status!;
}

test(`SIGKILL of the kernel at ${KILLS} random moments under load: no number is ever handed out twice, and each restart resumes above every number received`, async () => {
  const { results } = await built;
  const root = await tempDir('theseus-kill-');
  await extract({ file: results[0]!.tarball, cwd: root });
  roots.push(root);

  const everyNumber = new Set<number>();
  let highestReceived = -Infinity;
  let totalReceived = 0;
  for (let kill = 0; kill < KILLS; kill++) {
    // `kernel foreground` is what `kernel start` runs detached; as our own child, its death is
    // seen at once, with no polling.
    const kernel = spawn(join(root, 'bin', 'kernel'), ['foreground'], { cwd: root, stdio: 'ignore', env: { ...process.env, THESEUS_ROOT: '' } });
    const exited = new Promise((resolve) => kernel.once('exit', resolve));
    const status = await readyStatus(root, kernel.pid!);
    const port = status.http!.listeners[0]!.port;
    const load = startNextLoad(() => port, CLIENTS);
    // Some answers first, then the kill at a random moment of the load.
    await waitUntil(`20 answers after start #${kill + 1}`, () => load.answered() >= 20);
    await new Promise((resolve) => setTimeout(resolve, Math.random() * 250));
    kernel.kill('SIGKILL');
    await exited;
    await load.stop();

    const received = load.received.flat();
    assert.ok(received.length > 0);
    // Resumed above everything received before the kill (the first restart resumes from init).
    const lowest = Math.min(...received.map((receipt) => receipt.n));
    assert.ok(lowest > highestReceived, `after kill #${kill}, the kernel handed out ${lowest}, but ${highestReceived} had been received before`);
    for (const { n } of received) {
      assert.ok(!everyNumber.has(n), `${n} was handed out twice (around kill #${kill + 1})`);
      everyNumber.add(n);
      highestReceived = Math.max(highestReceived, n);
    }
    for (const record of load.received) {
      for (let i = 1; i < record.length; i++) assert.ok(record[i]!.n > record[i - 1]!.n, 'each client gets rising numbers');
    }
    totalReceived += received.length;
  }
  assert.ok(totalReceived >= KILLS * 20, `real load: ${totalReceived} numbers received`);
});
