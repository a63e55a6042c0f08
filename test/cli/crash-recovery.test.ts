// Crash recovery: the kernel is SIGKILLed at each phase boundary of an upgrade (held there by the
// test-only THESEUS_FAULTS=hang-after:<phase>). After `kernel start`, the permanent release runs,
// the registry is consistent and tells the truth, and the state is at least the last checkpoint.
// The repo's own kernel (kernel/index.js) runs the deploy root: a release's bundled kernel
// ignores THESEUS_FAULTS.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { extract } from 'tar';
import { request } from '../../kernel/cli/control-client.ts';
import { readRegistry } from '../../kernel/release/registry.ts';
import { killAndWait, parseSequenceReply, root as repo, runAsync, waitUntil } from '../helpers.ts';
import { sharedExamples, tempDir } from '../release/helpers.ts';

const built = sharedExamples();
const roots: string[] = [];
const kernelBin = join(repo, 'kernel', 'index.js');

/**
 * The repo's CLI on a deploy root. Without blocking this process: the seven cases run side by
 * side, and a synchronous spawn in one would stall the waits of the others.
 */
function cli(root: string, env: Record<string, string>, ...args: string[]) {
  return runAsync(process.execPath, [kernelBin, ...args, '--root', root], { env: { ...process.env, ...env } });
}

after(async () => {
  await Promise.all(roots.map((root) => cli(root, {}, 'stop')));
});

const next = async (root: string) => parseSequenceReply(((await request(root, 'call', { service: 'sequence', method: 'nextNumber', args: [] })) as { reply: unknown }).reply);

const boundaries = [
  { phase: 'check', permanent: '0.1.0' },
  { phase: 'prepare', permanent: '0.1.0' },
  { phase: 'suspend', permanent: '0.1.0' },
  { phase: 'migrate', permanent: '0.1.0' },
  { phase: 'switch', permanent: '0.1.0' },
  { phase: 'probation', permanent: '0.1.0' },
  { phase: 'commit', permanent: '0.3.0' },
];

// Each case has its own deploy root, kernel, socket and ports (the example's front door binds port
// 0), so they run at once: most of a case is waiting on processes to boot and exit.
describe('a SIGKILL at each phase boundary of an upgrade', { concurrency: boundaries.length }, () => {
  for (const { phase, permanent } of boundaries) {
    test(`SIGKILL after ${phase}: a restart runs the permanent release (${permanent}), the registry is true, the state is not behind its checkpoint`, async () => {
      const { results } = await built;
      const root = await tempDir('theseus-crash-');
      roots.push(root);
      await extract({ file: results[0]!.tarball, cwd: root });
      const faults = { THESEUS_FAULTS: `hang-after:${phase}` };
      const started = await cli(root, faults, 'start');
      assert.equal(started.status, 0, started.stderr + started.stdout);
      const pid = Number((await cli(root, {}, 'pid')).stdout.trim());
      let last = 0;
      // The example runs in durability 'reply': each of these is on disk before its reply, so no
      // wait for a checkpoint timer is needed for the restart to resume above them.
      for (let i = 0; i < 30; i++) last = await next(root);

      // 0.1.0 -> 0.3.0 changes the state vsn, so every phase has real work to be cut in.
      const upgrade = spawn(process.execPath, [kernelBin, 'upgrade', results[2]!.tarball, '--root', root], { stdio: 'ignore' });
      upgrade.on('error', () => undefined);
      const log = join(root, 'var', 'log', 'kernel.log');
      await waitUntil(`the kernel's log to say it is hanging after ${phase}`, async () => (await readFile(log, 'utf8').catch(() => '')).includes(`hanging after ${phase}`), {
        intervalMs: 50,
        // Seven cases boot their kernels and CLIs at once on a shared machine: a generous deadline.
        timeoutMs: 120_000,
      });
      await killAndWait(pid);
      upgrade.kill();

      const restarted = await cli(root, {}, 'start');
      assert.equal(restarted.status, 0, restarted.stderr + restarted.stdout);
      assert.match(restarted.stdout, new RegExp(`release ${permanent.replace(/\./g, '\\.')}`));
      const registry = await readRegistry(root);
      const permanents = registry.releases.filter((r) => r.status === 'permanent');
      assert.deepEqual(permanents.map((r) => r.version), [permanent], 'exactly one permanent release, the one running');
      assert.ok(!registry.releases.some((r) => r.status === 'current'), 'no release left on trial after a restart');
      const listed = JSON.parse((await cli(root, {}, 'releases', '--json')).stdout) as Array<{ version: string; status: string; running: boolean }>;
      assert.deepEqual(
        listed.filter((r) => r.running).map((r) => [r.version, r.status]),
        [[permanent, 'permanent']],
        'kernel releases tells the truth',
      );
      const resumed = await next(root);
      assert.ok(resumed >= 456 + 30, `resumed at ${resumed}, below the 30 numbers handed out, each on disk before its reply`);
      assert.ok(resumed <= last + 1 + 5, `resumed at ${resumed}, beyond any number handed out (${last})`);
      assert.equal((await cli(root, {}, 'stop')).status, 0);
    });
  }
});
