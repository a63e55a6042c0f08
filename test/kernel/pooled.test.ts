// Pooled stateless services: a service declared with `pool: { size }` runs on a piscina pool of
// that many threads, behind the same typed client as a stateful one. Its swaps warm a new pool
// first, route new calls to it, and retire the old pool once its calls are done: no call fails.
// Real worker threads throughout; no mocks.

import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { Kernel, SwapError, type ClientOf } from '../../kernel/index.ts';
import { buildRelease } from '../../kernel/release/build.ts';
import type pooledService from '../fixtures/services/pooled-v1.ts';
import { fixture, logCollector, osThreadCount, root, sequenceEntry, waitUntil, type SequenceApi } from '../helpers.ts';
import { tempDir } from '../release/helpers.ts';

type HasherApi = ClientOf<typeof pooledService>;

const POOL_SIZE = 3;
const hasher = (name: string, size = POOL_SIZE) => ({ entry: fixture(name), pool: { size } });

test('a pooled service answers through the same typed client, with the stateful path\'s error codes, and serves on after errors', async () => {
  const logs = logCollector();
  const kernel = await Kernel.start({ release: '1.0.0', services: { hasher: hasher('pooled-v1'), counter: { entry: fixture('counter-v1') } }, onLog: logs.onLog });
  try {
    const pool = kernel.client<HasherApi>('hasher');
    assert.equal(await pool.fib(20), 6765);
    const answer = await pool.whoami(7);
    assert.deepEqual({ code: answer.code, release: answer.release, tag: answer.tag }, { code: 'v1', release: '1.0.0', tag: 7 });
    assert.ok(kernel.poolThreadIds('hasher').includes(answer.threadId), 'a thread of the pool answered');
    assert.equal(kernel.poolThreadIds('hasher').length, POOL_SIZE);
    // Many calls at once spread over the pool's threads.
    const replies = await Promise.all(Array.from({ length: 60 }, (_, i) => pool.slow(5, i)));
    assert.deepEqual(replies.map((reply) => reply.tag), Array.from({ length: 60 }, (_, i) => i));

    // The codes a stateful service gives, for the same mistakes.
    const untyped = kernel.client<Record<string, (...args: unknown[]) => Promise<unknown>>>('hasher');
    const statefulUntyped = kernel.client<Record<string, (...args: unknown[]) => Promise<unknown>>>('counter');
    await assert.rejects(pool.fail(), { code: 'E_HANDLER_FAILED', message: /failed on purpose/ });
    await assert.rejects(untyped.nope!(), { code: 'E_UNKNOWN_METHOD' });
    await assert.rejects(statefulUntyped.nope!(), { code: 'E_UNKNOWN_METHOD' });
    await assert.rejects(pool.noReply(), { code: 'E_BAD_HANDLER_RESULT' });
    await assert.rejects(untyped.fib!(() => 1), { code: 'E_ARGS_NOT_CLONEABLE' });
    await assert.rejects(statefulUntyped.add!(() => 1), { code: 'E_ARGS_NOT_CLONEABLE' });
    // What only a pool refuses: keeping state. A client of a service it does not list in uses is refused as a stateful one's is.
    await assert.rejects(pool.keepState(), { code: 'E_POOLED_STATE_RETURNED' });
    await assert.rejects(pool.callOther(), { code: 'E_NOT_IN_USES' });
    // The pool serves on: every thread is still there.
    assert.equal(await pool.fib(15), 610);
    assert.equal(kernel.poolThreadIds('hasher').length, POOL_SIZE);

    // Log lines written in a pool thread reach onLog with the service's name and release.
    assert.equal(await pool.logged(3), 3);
    assert.equal(pool.note('a cast from the test'), undefined);
    await pool.fib(1); // the cast has surely run: the pool answered later calls
    await waitUntil('the cast\'s log line', () => logs.records.some((r) => r.message === 'a cast from the test'));
    const logged = logs.records.find((r) => r.message === 'logged from a pool thread');
    assert.deepEqual([logged?.service, logged?.release, logged?.data], ['hasher', '1.0.0', { n: 3, service: 'hasher' }]);
    assert.ok(logs.records.some((r) => r.message === 'a cast from the test' && r.service === 'hasher'));

    const status = (await kernel.status()).find((s) => s.name === 'hasher')!;
    assert.equal(status.state, 'running');
    assert.equal(status.pool?.size, POOL_SIZE);
    assert.ok(status.callsServed >= 64, `callsServed ${status.callsServed}`);
    assert.equal(status.castsServed, 1);
    assert.deepEqual(kernel.methods('hasher').casts, ['note']);
    assert.deepEqual(await kernel.health('hasher'), { healthy: true });
    assert.deepEqual(kernel.services.sort(), ['counter', 'hasher']);
  } finally {
    await kernel.stop();
  }
  await assert.rejects(async () => kernel.client('hasher'), { code: 'E_KERNEL_STOPPED' });
});

test('many callers through 6 swaps between two versions: none fails, each runs and is answered once, and calls made after a swap get the new code; old pool threads exit', async () => {
  // Every run of whoami and slow, in whichever pool, appends its tag here (pooled-common.ts).
  const runLog = join(await tempDir('theseus-pool-runs-'), 'runs.log');
  const tracked = (name: string) => ({ ...hasher(name), config: { runLog } });
  const kernel = await Kernel.start({ release: '1.0.0', services: { hasher: tracked('pooled-v1') }, onLog: logCollector().onLog });
  try {
    const pool = kernel.client<HasherApi>('hasher');
    // One swap first, so helper threads created on first use (esbuild's, libuv's) already exist.
    await kernel.upgrade({ release: '1.0.1', services: { hasher: tracked('pooled-v2') } });
    await kernel.downgrade({ release: '1.0.0', services: { hasher: tracked('pooled-v1') } });
    const baselineThreads = await osThreadCount();
    const servedBefore = (await kernel.status())[0]!.callsServed;

    let nextTag = 0;
    let stopping = false;
    /** The code every call made now must get; null while a swap is running (either code is right). */
    let expected: string | null = 'v1';
    const answered = new Map<number, number>();
    const failures: unknown[] = [];
    const wrongCode: string[] = [];
    let made = 0;
    const record = (tag: number, code: string, expectedAtCall: string | null) => {
      answered.set(tag, (answered.get(tag) ?? 0) + 1);
      if (expectedAtCall !== null && code !== expectedAtCall) wrongCode.push(`call ${tag} made for ${expectedAtCall} was answered by ${code}`);
    };
    const callers = Array.from({ length: 40 }, async (_, caller) => {
      while (!stopping) {
        const tag = nextTag++;
        const expectedAtCall = expected;
        made++;
        try {
          // Some calls are still running in the old pool when the switch comes.
          const reply = caller % 4 === 0 ? await pool.slow(15, tag) : await pool.whoami(tag);
          record(reply.tag, reply.code, expectedAtCall);
        } catch (error) {
          // A failure ends the load: a caller whose calls fail at once would spin on microtasks
          // and starve every timer, the deadlines' included.
          failures.push(error);
          stopping = true;
        }
      }
    });

    const seenThreads = new Set(kernel.poolThreadIds('hasher'));
    const versions = ['v2', 'v1', 'v2', 'v1', 'v2', 'v1'] as const;
    const probesPerSwap = POOL_SIZE * 2;
    for (const [index, version] of versions.entries()) {
      const before = answered.size;
      await waitUntil(`200 more answered calls before swap ${index + 1}`, () => {
        if (failures.length > 0) throw new Error(`a call failed: ${String(failures[0])}`);
        return answered.size >= before + 200;
      });
      expected = null;
      const report = await kernel.upgrade({ release: `1.1.${index}`, services: { hasher: tracked(`pooled-${version}`) } });
      expected = version;
      assert.equal(report.outcome, 'switched');
      assert.deepEqual(report.services.map((s) => [s.service, s.outcome, s.to.release, s.pauseMs]), [['hasher', 'switched', `1.1.${index}`, 0]]);
      // A call made now is answered by the new code, whatever thread takes it.
      const fresh = await Promise.all(Array.from({ length: probesPerSwap }, () => pool.whoami(-1)));
      assert.deepEqual(new Set(fresh.map((reply) => reply.code)), new Set([version]));
      const ids = kernel.poolThreadIds('hasher');
      for (const id of ids) assert.ok(!seenThreads.has(id), `swap ${index + 1} runs the new code in new threads`);
      for (const id of ids) seenThreads.add(id);
      // upgrade() resolves once the old pool's threads have exited.
      assert.ok((await osThreadCount()) <= baselineThreads, `OS threads grew from ${baselineThreads} to ${await osThreadCount()} after swap ${index + 1}`);
    }
    stopping = true;
    await Promise.all(callers);

    assert.deepEqual(failures, [], 'no call failed');
    assert.deepEqual(wrongCode, [], 'calls made after a swap resolved were answered by the new code');
    assert.equal(answered.size, made, 'every call was answered');
    assert.ok([...answered.values()].every((count) => count === 1), 'no call was answered twice');
    assert.ok(made > 1200, `load kept going (${made} calls)`);
    assert.equal(seenThreads.size, POOL_SIZE * (versions.length + 1));

    // A promise settles once whatever happens behind it, so the checks above cannot see a task
    // that ran in both the old and the new pool, or an answer counted twice. The handlers' own
    // record of their runs can: each tag ran exactly once, and the probes once each.
    const runs = new Map<number, number>();
    for (const line of (await readFile(runLog, 'utf8')).split('\n').filter(Boolean)) runs.set(Number(line), (runs.get(Number(line)) ?? 0) + 1);
    const probes = versions.length * probesPerSwap;
    assert.equal(runs.get(-1), probes, 'each probe ran once');
    runs.delete(-1);
    const notOnce = [...runs].filter(([tag, count]) => count !== 1 || tag < 0 || tag >= made);
    assert.deepEqual(notOnce, [], 'tags run other than exactly once ([tag, runs])');
    assert.equal(runs.size, made, 'every call made ran');
    // And the kernel's count of answered calls, over every pool, matches the calls made.
    const served = (await kernel.status())[0]!.callsServed - servedBefore;
    assert.equal(served, made + probes, 'callsServed counts each answered call once');
  } finally {
    await kernel.stop();
  }
});

test('a new pool that fails to warm (its module throws at import) is discarded; the old pool serves on under load', async () => {
  const kernel = await Kernel.start({ release: '1.0.0', services: { hasher: hasher('pooled-v1') }, onLog: logCollector().onLog });
  try {
    const pool = kernel.client<HasherApi>('hasher');
    await kernel.upgrade({ release: '1.0.1', services: { hasher: hasher('pooled-v2') } });
    const baselineThreads = await osThreadCount();
    const threadsBefore = kernel.poolThreadIds('hasher');
    let stopping = false;
    const failures: unknown[] = [];
    let answered = 0;
    const callers = Array.from({ length: 20 }, async (_, caller) => {
      while (!stopping) {
        await pool.whoami(caller).then(
          () => answered++,
          (error: unknown) => {
            failures.push(error); // and stop, as above: no spinning on calls that fail at once
            stopping = true;
          },
        );
      }
    });
    const error = await kernel.upgrade({ release: '1.0.2', services: { hasher: hasher('pooled-boot-throws') } }).then(
      () => assert.fail('the swap should have failed'),
      (failure: unknown) => failure,
    );
    assert.ok(error instanceof SwapError);
    assert.equal(error.code, 'E_BOOT_FAILED');
    assert.match(error.message, /fails at import/);
    assert.equal(error.report.outcome, 'rolled-back');
    assert.equal(error.report.failedPhase, 'prepare');
    assert.deepEqual(error.report.services.map((s) => [s.service, s.outcome]), [['hasher', 'rolled-back']]);
    const target = answered + 100;
    await waitUntil('100 more answered calls after the failed swap', () => {
      if (failures.length > 0) throw new Error(`a call failed: ${String(failures[0])}`);
      return answered >= target;
    });
    stopping = true;
    await Promise.all(callers);
    assert.deepEqual(failures, []);
    assert.equal((await pool.whoami(1)).code, 'v2');
    assert.deepEqual(kernel.poolThreadIds('hasher'), threadsBefore, 'the old pool is still the one serving');
    assert.ok((await osThreadCount()) <= baselineThreads, 'the new pool\'s threads are gone');
    // The pool can still be swapped afterwards.
    await kernel.upgrade({ release: '1.0.3', services: { hasher: hasher('pooled-v1') } });
    assert.equal((await pool.whoami(1)).code, 'v1');
  } finally {
    await kernel.stop();
  }
});

test('one swap of a stateful and a pooled service: the pool follows the stateful swap, and is discarded when it rolls back', async () => {
  const kernel = await Kernel.start({
    release: '0.1.0',
    services: { sequence: { entry: sequenceEntry('0.1.0') }, hasher: hasher('pooled-v1') },
    onLog: logCollector().onLog,
  });
  try {
    const pool = kernel.client<HasherApi>('hasher');
    const seq = kernel.client<SequenceApi>('sequence');
    const baselineThreads = await osThreadCount();
    const rolledBack = await kernel
      .upgrade({ release: '0.3.0', services: { sequence: { entry: fixture('sequence-migration-throws') }, hasher: hasher('pooled-v2') } })
      .then(() => assert.fail('the migration throws'), (error: unknown) => error as SwapError);
    assert.equal(rolledBack.code, 'E_MIGRATION_FAILED');
    assert.deepEqual(rolledBack.report.services.map((s) => [s.service, s.outcome]).sort(), [['hasher', 'rolled-back'], ['sequence', 'rolled-back']]);
    assert.equal((await pool.whoami(1)).code, 'v1', 'the pool was not switched');
    assert.ok((await osThreadCount()) <= baselineThreads, 'the warmed pool was discarded');

    const report = await kernel.upgrade({ release: '0.2.0', services: { sequence: { entry: sequenceEntry('0.2.0') }, hasher: hasher('pooled-v2') } });
    assert.deepEqual(report.services.map((s) => [s.service, s.outcome]).sort(), [['hasher', 'switched'], ['sequence', 'switched']]);
    assert.equal((await pool.whoami(1)).code, 'v2');
    assert.match(String(await seq.nextNumber()), /^The next number is/);

    // A release that changes only the pool: the unchanged stateful service is reported as such.
    const poolOnly = await kernel.upgrade({ release: '0.2.1', services: { sequence: { entry: sequenceEntry('0.2.0') }, hasher: hasher('pooled-v1', 2) } });
    assert.deepEqual(poolOnly.services.map((s) => [s.service, s.outcome]).sort(), [['hasher', 'switched'], ['sequence', 'unchanged']]);
    assert.equal(kernel.poolThreadIds('hasher').length, 2, 'a new size takes effect with the new pool');
    // And one that changes nothing is refused, as before.
    await assert.rejects(
      kernel.upgrade({ release: '0.2.2', services: { sequence: { entry: sequenceEntry('0.2.0') }, hasher: hasher('pooled-v1', 2) } }),
      { code: 'E_SWAP_NOTHING_TO_DO' },
    );
  } finally {
    await kernel.stop();
  }
});

test('refused with a clear code: a pooled service that uses another pool, and a change between pooled and stateful', async () => {
  const onLog = logCollector().onLog;
  const threadsBefore = await osThreadCount();
  // pooled-uses uses 'counter', here a pool too.
  await assert.rejects(Kernel.start({ release: '1.0.0', services: { hasher: hasher('pooled-uses'), counter: hasher('pooled-v1') }, onLog }), { code: 'E_POOLED_USES' });
  assert.ok((await osThreadCount()) <= threadsBefore, 'a refused start leaves no thread behind');

  const kernel = await Kernel.start({ release: '1.0.0', services: { hasher: hasher('pooled-v1'), counter: { entry: fixture('counter-v1') } }, onLog });
  try {
    const refusals: Array<[string, Record<string, { entry: string; pool?: { size: number } }>, string]> = [
      ['pooled to stateful', { hasher: { entry: fixture('pooled-v2') } }, 'E_POOLED_KIND_CHANGE'],
      ['stateful to pooled', { counter: { entry: fixture('counter-v2'), pool: { size: 2 } } }, 'E_POOLED_KIND_CHANGE'],
    ];
    for (const [label, services, code] of refusals) {
      const error = await kernel.upgrade({ release: '1.0.1', services }).then(
        () => assert.fail(`${label}: the swap should be refused`),
        (failure: unknown) => failure as SwapError,
      );
      assert.equal(error.code, code, label);
      assert.equal(error.report.outcome === 'refused' || error.report.outcome === 'rolled-back', true, label);
    }
    // Nothing moved.
    assert.equal((await kernel.client<HasherApi>('hasher').whoami(1)).code, 'v1');
    assert.equal(kernel.poolThreadIds('hasher').length, POOL_SIZE);
  } finally {
    await kernel.stop();
  }
});

test('kernel release refuses a pooled service that uses another pool, and builds pools and stateful services that use each other', async () => {
  const build = async (services: string) => {
    const app = await tempDir('theseus-pooled-app-');
    await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'pooled', version: '1.0.0', type: 'module' }));
    await mkdir(join(app, 'out'));
    await writeFile(
      join(app, 'theseus.config.ts'),
      `import { defineRelease } from '${root}kernel/release/config.ts';\nexport default defineRelease({ app: 'pooled', services: { ${services} } });\n`,
    );
    return buildRelease({ configFile: join(app, 'theseus.config.ts'), outDir: join(app, 'out') });
  };
  await assert.rejects(build(`hasher: { entry: '${fixture('pooled-uses')}', pool: { size: 2 } }, counter: { entry: '${fixture('pooled-v1')}', pool: { size: 2 } }`), { code: 'E_POOLED_USES' });
  const both = await build(`hasher: { entry: '${fixture('pooled-uses')}', pool: { size: 2 } }, counter: { entry: '${fixture('counter-v1')}' }, user: { entry: '${fixture('uses-pooled')}' }`);
  assert.deepEqual([both.manifest.services.hasher!.uses, both.manifest.services.user!.uses], [['counter'], ['hasher']]);
  const built = await build(`hasher: { entry: '${fixture('pooled-v1')}', pool: { size: 2 } }, counter: { entry: '${fixture('counter-v1')}' }`);
  assert.deepEqual(built.manifest.services.hasher!.pool, { size: 2 });
});
