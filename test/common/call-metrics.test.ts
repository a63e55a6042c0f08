// The workers' call counters and the admin listener's address, without a kernel: what the
// counters add up to, the quantile the dashboard shows from them, and the `admin` config's checks.

import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { CallMetrics, LATENCY_BUCKETS_SECONDS, addSnapshots } from '../../kernel/common/call-metrics.ts';
import { quantileMs } from '../../kernel/main/admin/dashboard-feed.ts';
import { adminAddress, normalizeAdmin } from '../../kernel/release/admin-config.ts';
import { loadReleaseConfig } from '../../kernel/release/config.ts';
import { tempDir } from '../temp-dirs.ts';

test('calls, batches and casts are counted by outcome, each call once in the bucket of its time', () => {
  const metrics = new CallMetrics();
  metrics.call(true, 0.05); // 50 µs: the first bucket (le 0.0001 s)
  metrics.call(false, 3); // 3 ms: le 0.005
  metrics.calls(8, 2, 0.3); // a batch of 10 answered after 0.3 ms: le 0.0005
  metrics.call(true, 60_000); // a minute: past the last bound
  metrics.cast(true);
  metrics.cast(false);
  const snapshot = metrics.snapshot();
  assert.deepEqual([snapshot.callsOk, snapshot.callsFailed, snapshot.castsOk, snapshot.castsFailed], [10, 3, 1, 1]);
  assert.equal(snapshot.latencyBuckets.length, LATENCY_BUCKETS_SECONDS.length + 1);
  assert.equal(snapshot.latencyBuckets[0], 1);
  assert.equal(snapshot.latencyBuckets[LATENCY_BUCKETS_SECONDS.indexOf(0.0005)], 10);
  assert.equal(snapshot.latencyBuckets[LATENCY_BUCKETS_SECONDS.indexOf(0.005)], 1);
  assert.equal(snapshot.latencyBuckets.at(-1), 1, '+Inf holds the minute');
  assert.equal(snapshot.latencyCount, 13);
  assert.ok(Math.abs(snapshot.latencySumSeconds - (0.00005 + 0.003 + 10 * 0.0003 + 60)) < 1e-9);
  const twice = addSnapshots(snapshot, snapshot);
  assert.equal(twice.callsOk, 20);
  assert.equal(twice.latencyBuckets[0], 2);
});

test('the p99 the dashboard shows is interpolated in its bucket, as histogram_quantile() does', () => {
  const metrics = new CallMetrics();
  for (let i = 0; i < 99; i++) metrics.call(true, 0.05);
  metrics.call(true, 8); // one slow call in 100: le 0.01
  assert.ok(quantileMs(metrics.snapshot(), 0.5)! <= 0.1);
  const p99 = quantileMs(metrics.snapshot(), 0.99)!;
  assert.ok(p99 > 0 && p99 <= 0.1, `p99 ${p99} ms is in the first bucket`);
  assert.equal(quantileMs(metrics.snapshot(), 1), 10, 'the slowest call is in the bucket up to 10 ms');
  assert.equal(quantileMs(new CallMetrics().snapshot(), 0.99), null, 'no calls, no p99');
});

test("admin in theseus.config.ts: loopback and any free port by default, false turns it off, a bad host or port is refused with its own code", async () => {
  assert.deepEqual(adminAddress(undefined), { host: '127.0.0.1', port: 0 });
  assert.equal(adminAddress(false), null);
  assert.deepEqual(normalizeAdmin({ port: 9464 }, 'f'), { host: '127.0.0.1', port: 9464 });
  assert.deepEqual(normalizeAdmin({ host: '::1', port: 0 }, 'f'), { host: '::1', port: 0 });
  for (const bad of [{ host: 'example.com' }, { host: '' }, { host: 7 }, { port: 65536 }, { port: -1 }, { port: 1.5 }, { port: '9464' }]) {
    assert.throws(() => normalizeAdmin(bad, 'f'), { code: 'E_ADMIN_ADDRESS_INVALID' }, JSON.stringify(bad));
  }
  const app = await tempDir('theseus-admin-config-');
  await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'x', version: '1.0.0', type: 'module' }));
  await writeFile(join(app, 'a.ts'), 'export default {};\n');
  await writeFile(join(app, 'theseus.config.ts'), "export default { app: 'x', services: { a: { entry: './a.ts' } }, admin: { host: '0.0.0.0', port: 99999 } };\n");
  await assert.rejects(loadReleaseConfig(join(app, 'theseus.config.ts')), { code: 'E_ADMIN_ADDRESS_INVALID' });
  await writeFile(join(app, 'theseus.config.ts'), "export default { app: 'x', services: { a: { entry: './a.ts' } }, admin: { host: '0.0.0.0', port: 9464 } };\n");
  assert.deepEqual((await loadReleaseConfig(join(app, 'theseus.config.ts'))).admin, { host: '0.0.0.0', port: 9464 });
});

test("a retired worker's counts stay in its release's total, and a worker that did not answer once is not counted twice", async () => {
  const { KernelMetrics } = await import('../../kernel/main/metrics.ts');
  const counted = (calls: number) => {
    const metrics = new CallMetrics();
    for (let i = 0; i < calls; i++) metrics.call(true, 0.05);
    return metrics.snapshot();
  };
  let workers: Array<{ service: string; release: string; threadId: number; snapshot: ReturnType<typeof counted> | null }> = [];
  const metrics = new KernelMetrics({ status: async () => [], callMetrics: async () => workers, frontDoor: () => null, stateDir: null });
  const ok = async (release: string) => {
    const line = new RegExp(`^theseus_calls_total\\{service="s",release="${release.replace(/\./g, '\\.')}",outcome="ok"\\} (\\d+)$`, 'm').exec((await metrics.exposition()).body);
    return line ? Number(line[1]) : null;
  };
  workers = [{ service: 's', release: '1.0.0', threadId: 1, snapshot: counted(10) }];
  assert.equal(await ok('1.0.0'), 10);
  // Swapped: thread 1 retired with its 10, thread 2 serves 1.1.0.
  workers = [{ service: 's', release: '1.1.0', threadId: 2, snapshot: counted(5) }];
  assert.equal(await ok('1.0.0'), 10, 'the retired worker still counts');
  assert.equal(await ok('1.1.0'), 5);
  workers = [{ service: 's', release: '1.1.0', threadId: 2, snapshot: null }];
  assert.equal(await ok('1.1.0'), 5, 'a worker that did not answer keeps its last figure');
  workers = [{ service: 's', release: '1.1.0', threadId: 2, snapshot: counted(7) }];
  assert.equal(await ok('1.1.0'), 7, 'and is not counted again as retired');
  // A crash: thread 3 takes over the same release; thread 2's 7 stay.
  workers = [{ service: 's', release: '1.1.0', threadId: 3, snapshot: counted(1) }];
  assert.equal(await ok('1.1.0'), 8);
});

test('kernel dashboard with a kernel whose release turns the listener off, or an admin.json an earlier kernel left: E_ADMIN_NOT_LISTENING', async () => {
  const { dashboardInfo } = await import('../../kernel/cli/dashboard.ts');
  const { mkdir } = await import('node:fs/promises');
  const root = await tempDir('theseus-dashboard-info-');
  await mkdir(join(root, 'var'));
  // This process stands in for the running kernel: its pid is alive.
  await writeFile(join(root, 'var', 'kernel.pid'), `${process.pid}\n`);
  await assert.rejects(dashboardInfo(root), { code: 'E_ADMIN_NOT_LISTENING' });
  await writeFile(join(root, 'var', 'admin.json'), JSON.stringify({ host: '127.0.0.1', port: 1, pid: process.pid + 1 }));
  await assert.rejects(dashboardInfo(root), { code: 'E_ADMIN_NOT_LISTENING' });
  await writeFile(join(root, 'var', 'admin.json'), JSON.stringify({ host: '127.0.0.1', port: 9464, pid: process.pid }));
  await writeFile(join(root, 'var', 'admin-token'), `${'a'.repeat(64)}\n`);
  const info = await dashboardInfo(root);
  assert.equal(info.pageUrl, `http://127.0.0.1:9464/?token=${'a'.repeat(64)}`);
});
