// Injected I/O faults (THESEUS_FAULTS, honoured only outside a release's bundled kernel): a disk
// that fills while a release unpacks, and a registry that cannot be written at commit. The old
// release keeps serving, nothing is lost, the error names its phase, the audit records it.

import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { extract } from 'tar';
import { ControlConnection, request } from '../../kernel/cli/control-client.ts';
import { KernelDaemon } from '../../kernel/main/daemon.ts';
import { installRelease } from '../../kernel/release/install.ts';
import { readRegistry } from '../../kernel/release/registry.ts';
import { parseSequenceReply } from '../helpers.ts';
import { buildExamples, tempDir } from '../release/helpers.ts';

const built = buildExamples();
after(() => {
  delete process.env.THESEUS_FAULTS;
});

/** A daemon in this process (so THESEUS_FAULTS reaches it) on a fresh deploy root, with callers. */
async function runningRoot() {
  const { results } = await built;
  const root = await tempDir('theseus-faults-');
  await extract({ file: results[0]!.tarball, cwd: root });
  const daemon = await KernelDaemon.start({ root, terminal: false });
  const connection = await ControlConnection.open(root);
  const numbers: number[] = [];
  const failures: unknown[] = [];
  let stop = false;
  const callers = Array.from({ length: 20 }, async () => {
    while (!stop) {
      try {
        const { reply } = (await connection.request('call', { service: 'sequence', method: 'nextNumber', args: [] })) as { reply: unknown };
        numbers.push(parseSequenceReply(reply));
      } catch (error) {
        failures.push(error);
        stop = true;
      }
    }
  });
  const finish = async () => {
    stop = true;
    await Promise.all(callers);
    connection.close();
    await daemon.stop();
    const sorted = [...numbers].sort((a, b) => a - b);
    for (let i = 1; i < sorted.length; i++) assert.equal(sorted[i]! - sorted[i - 1]!, 1, 'numbers stayed consecutive');
    assert.deepEqual(failures, []);
    return (await readFile(join(root, 'var', 'audit.jsonl'), 'utf8')).trim().split('\n').map((line) => JSON.parse(line) as { op: string; outcome: string; phase?: string; code?: string });
  };
  return { root, results, finish };
}

test('the disk fills while a release unpacks: refused in check, nothing half-installed, the old release serves on', async () => {
  const { root, results, finish } = await runningRoot();
  process.env.THESEUS_FAULTS = 'unpack-write';
  try {
    await assert.rejects(request(root, 'upgrade', { source: results[1]!.tarball, commit: true }), (error: Error & { code: string; phase?: string }) => {
      assert.equal(error.code, 'E_INSTALL_FAILED');
      assert.equal(error.phase, 'check');
      assert.match(error.message, /no space left on device/);
      return true;
    });
  } finally {
    delete process.env.THESEUS_FAULTS;
  }
  assert.deepEqual((await readdir(join(root, 'releases'))).sort(), ['0.1.0', 'RELEASES'], 'no staging folder or half release left');
  assert.equal(((await request(root, 'status', {})) as { release: string }).release, '0.1.0');
  const audit = await finish();
  assert.ok(audit.some((e) => e.op === 'upgrade' && e.outcome === 'failed' && e.code === 'E_INSTALL_FAILED' && e.phase === 'check'));
});

test('the registry cannot be written at commit: the upgrade is reverted, the registry still tells the truth', async () => {
  const { root, results, finish } = await runningRoot();
  await installRelease(root, results[1]!.tarball);
  process.env.THESEUS_FAULTS = 'registry-write';
  try {
    await assert.rejects(request(root, 'upgrade', { source: '0.2.0', commit: true }), (error: Error & { code: string; phase?: string }) => {
      assert.equal(error.code, 'E_REGISTRY_WRITE_FAILED');
      assert.equal(error.phase, 'commit');
      assert.match(error.message, /Reverted to 0\.1\.0/);
      return true;
    });
  } finally {
    delete process.env.THESEUS_FAULTS;
  }
  assert.equal(((await request(root, 'status', {})) as { release: string }).release, '0.1.0');
  const registry = await readRegistry(root);
  assert.deepEqual(registry.releases.map((r) => [r.version, r.status]), [['0.1.0', 'permanent'], ['0.2.0', 'unpacked']]);
  const audit = await finish();
  assert.ok(audit.some((e) => e.op === 'upgrade' && e.outcome === 'rolled-back' && e.code === 'E_REGISTRY_WRITE_FAILED' && e.phase === 'commit'));
  assert.ok(audit.some((e) => e.op === 'rollback' && e.outcome === 'ok' && e.phase === 'commit'));
});

test("a release's bundled kernel cannot be made to fail: THESEUS_FAULTS is compiled out", async () => {
  const { results } = await built;
  const root = await tempDir('theseus-bundled-');
  await extract({ file: results[0]!.tarball, cwd: root });
  const kernel = await readFile(join(root, 'lib', 'kernel.mjs'), 'utf8');
  assert.ok(kernel.includes('injected by THESEUS_FAULTS'), 'the fault code is in the bundle');
  assert.doesNotMatch(kernel, /process\.env\.THESEUS_FAULTS\s*\?\?/, 'but nothing reads the variable');
});
