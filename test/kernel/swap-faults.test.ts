// Each way a swap can fail before the switch: the old release keeps serving under load, its state
// is intact, no call is lost or fails, and the error names what failed and in which phase.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Kernel, SwapError, type TheseusError } from '../../kernel/index.ts';
import type { ServiceDescriptor } from '../../kernel/common/protocol.ts';
import {
  checkSequenceInvariants,
  fixture,
  logCollector,
  osThreadCount,
  sequenceRelease,
  startSequenceLoad,
  stepRuns,
  waitForCalls,
} from '../helpers.ts';

/** What a release manifest would say the sequence service declares (vsn "0"). */
const sequenceVsn0: ServiceDescriptor = {
  vsn: '0',
  calls: ['nextNumber'],
  casts: ['incrementNumber'],
  uses: [],
  migrations: [],
  hasTerminate: false,
  hasHealth: false,
  stateCheck: 'transitions',
};

interface FaultCase {
  name: string;
  target: { release: string; services: Record<string, { entry: string; descriptor?: ServiceDescriptor }> };
  code: string;
  phase: string;
  outcome: 'refused' | 'rolled-back';
  message?: RegExp;
  controlTimeoutMs?: number;
}

const faults: FaultCase[] = [
  {
    name: 'the new module throws while loading (found by check, nothing touched)',
    target: { release: '0.2.1', services: { sequence: { entry: fixture('sequence-boot-throws') } } },
    code: 'E_BOOT_FAILED',
    phase: 'check',
    outcome: 'refused',
    message: /cannot load its configuration/,
  },
  {
    name: 'the new worker throws at boot although its manifest looked fine (prepare)',
    target: { release: '0.2.1', services: { sequence: { entry: fixture('sequence-boot-throws'), descriptor: sequenceVsn0 } } },
    code: 'E_BOOT_FAILED',
    phase: 'prepare',
    outcome: 'rolled-back',
    message: /cannot load its configuration/,
  },
  {
    name: 'the new worker never finishes booting (prepare, boot timeout)',
    target: { release: '0.2.1', services: { sequence: { entry: fixture('sequence-boot-hangs'), descriptor: sequenceVsn0 } } },
    code: 'E_BOOT_FAILED',
    phase: 'prepare',
    outcome: 'rolled-back',
    message: /did not finish loading/,
  },
  {
    name: 'the up migration throws (migrate)',
    target: { release: '0.3.0', services: { sequence: { entry: fixture('sequence-migration-throws') } } },
    code: 'E_MIGRATION_FAILED',
    phase: 'migrate',
    outcome: 'rolled-back',
    message: /0 -> 1 \(up\).*cannot read the old state/,
  },
  {
    name: "the new worker's thread ends in its up migration, holding the state handed to it (migrate)",
    target: { release: '0.3.0', services: { sequence: { entry: fixture('sequence-migration-exits') } } },
    code: 'E_WORKER_EXITED',
    phase: 'migrate',
    outcome: 'rolled-back',
    message: /exit code 3/,
  },
  {
    // The migrate request leaves in prepare with a long bound (it may wait through every suspend);
    // once the state is handed over, the migration gets the control timeout, no more.
    name: 'the up migration never finishes (migrate, control timeout)',
    target: { release: '0.3.0', services: { sequence: { entry: fixture('sequence-migration-hangs') } } },
    code: 'E_CONTROL_TIMEOUT',
    phase: 'migrate',
    outcome: 'rolled-back',
    message: /did not answer 'migrate' within 1500 ms/,
    controlTimeoutMs: 1500,
  },
  {
    name: 'the up migration returns state that cannot be cloned (migrate)',
    target: { release: '0.3.0', services: { sequence: { entry: fixture('sequence-migration-bad-state') } } },
    code: 'E_MIGRATION_BAD_STATE',
    phase: 'migrate',
    outcome: 'rolled-back',
    message: /state\.cache\.format is a function/,
  },
];

for (const fault of faults) {
  test(`swap fault: ${fault.name}`, async () => {
    const logs = logCollector();
    const kernel = await Kernel.start({ ...sequenceRelease('0.2.0'), bootTimeoutMs: 1500, controlTimeoutMs: fault.controlTimeoutMs ?? 10_000, onLog: logs.onLog });
    const threadsBefore = await osThreadCount();
    const load = startSequenceLoad(kernel, { callers: 50, ports: 10, inFlight: 2 });
    try {
      await waitForCalls(load, 1000);
      const error = await kernel.upgrade(fault.target).then(
        () => assert.fail('the swap should have failed'),
        (failure: unknown) => failure,
      );
      assert.ok(error instanceof SwapError, `expected a SwapError, got ${String(error)}`);
      assert.equal(error.code, fault.code);
      assert.equal(error.phase, fault.phase);
      assert.match(error.message, new RegExp(`phase '${fault.phase}'`));
      if (fault.message) assert.match(error.message, fault.message);
      assert.equal(error.report.outcome, fault.outcome);
      assert.equal(error.report.failedPhase, fault.phase);

      // The old release goes on serving the same sequence.
      await waitForCalls(load, 1000);
      const result = await load.stop();
      const { sorted, problems } = checkSequenceInvariants(result);
      assert.deepEqual(problems, []);
      assert.equal(sorted[0], 456);
      assert.deepEqual(stepRuns(sorted).map((run) => run.step), [1], 'numbers stayed consecutive: the state was untouched');
      const [status] = await kernel.status();
      assert.equal(status!.release, '0.2.0');
      assert.equal(status!.state, 'running');
      assert.equal(kernel.threadIds.length, 1);
      // The discarded workers are gone, not just forgotten.
      assert.ok((await osThreadCount()) <= threadsBefore, 'a discarded worker thread is still alive');
      assert.ok(logs.records.some((r) => r.service === 'kernel' && r.level === 'error' && r.message.includes(fault.phase)));
    } finally {
      await load.stop();
      await kernel.stop();
    }
  });
}

test('swap fault: a drain that passes its timeout resumes the old worker; the slow call still completes', async () => {
  const kernel = await Kernel.start({
    release: '1.0.0',
    services: { slow: { entry: fixture('slow-v1') } },
    drainTimeoutMs: 200,
    onLog: logCollector().onLog,
  });
  try {
    const slow = kernel.client<{ work(ms: number): Promise<number>; count(): Promise<number> }>('slow');
    await slow.work(1);
    const inFlight = slow.work(1500);
    // Calls queued behind the slow one wait in the port through the failed drain.
    const queued = [slow.work(1), slow.work(1)];
    await new Promise((resolve) => setTimeout(resolve, 50));
    await assert.rejects(kernel.upgrade({ release: '1.1.0', services: { slow: { entry: fixture('slow-v2') } } }), {
      code: 'E_DRAIN_TIMEOUT',
      phase: 'suspend',
    });
    assert.equal(await inFlight, 2);
    assert.deepEqual(await Promise.all(queued), [3, 4]);
    assert.equal(await slow.count(), 4);
    // Nothing is left half-done: the same swap succeeds once nothing is slow.
    const report = await kernel.upgrade({ release: '1.1.0', services: { slow: { entry: fixture('slow-v2') } } });
    assert.equal(report.outcome, 'switched');
    assert.equal(await slow.count(), 4);
  } finally {
    await kernel.stop();
  }
});

test('a drain waits for async in-flight handlers, then the swap goes ahead with their results', async () => {
  const kernel = await Kernel.start({ release: '1.0.0', services: { slow: { entry: fixture('slow-v1') } }, onLog: logCollector().onLog });
  try {
    const slow = kernel.client<{ work(ms: number): Promise<number>; count(): Promise<number> }>('slow');
    const inFlight = [slow.work(300), slow.work(10), slow.work(10)];
    await new Promise((resolve) => setTimeout(resolve, 20));
    const report = await kernel.upgrade({ release: '1.1.0', services: { slow: { entry: fixture('slow-v2') } } });
    assert.equal(report.outcome, 'switched');
    assert.deepEqual(await Promise.all(inFlight), [1, 2, 3]);
    assert.equal(await slow.count(), 3);
  } finally {
    await kernel.stop();
  }
});

test('a downgrade with no down migration is refused in check, before anything is touched', async () => {
  const kernel = await Kernel.start({ ...sequenceRelease('0.2.0'), onLog: logCollector().onLog });
  try {
    const seq = kernel.client<{ nextNumber(): Promise<unknown> }>('sequence');
    await kernel.upgrade({ release: '0.4.0', services: { sequence: { entry: fixture('sequence-no-down') } } });
    assert.equal(await seq.nextNumber(), 456);
    const error = await kernel.downgrade(sequenceRelease('0.2.0')).catch((failure: unknown) => failure);
    assert.ok(error instanceof SwapError);
    assert.equal(error.code, 'E_NO_MIGRATION_PATH');
    assert.equal(error.phase, 'check');
    assert.equal(error.report.outcome, 'refused');
    assert.match(error.message, /down migration path from state vsn '1' to '0' in sequence@0\.4\.0/);
    assert.equal(await seq.nextNumber(), 457);
  } finally {
    await kernel.stop();
  }
});

test('a swap to the same version with different code is refused: bump the version', async () => {
  const kernel = await Kernel.start({ ...sequenceRelease('0.2.0'), onLog: logCollector().onLog });
  try {
    await assert.rejects(kernel.upgrade({ release: '0.2.0', services: { sequence: { entry: fixture('sequence-no-down') } } }), {
      code: 'E_BAD_OPTIONS',
      phase: 'check',
    });
    await assert.rejects(kernel.upgrade(sequenceRelease('0.2.0')), { code: 'E_SWAP_NOTHING_TO_DO' });
    await assert.rejects(kernel.upgrade({ release: '0.3.0', services: { nope: { entry: fixture('counter-v1') } } }), {
      code: 'E_UNKNOWN_SERVICE',
    });
  } finally {
    await kernel.stop();
  }
});

test('only one swap runs at a time', async () => {
  const kernel = await Kernel.start({ ...sequenceRelease('0.1.0'), onLog: logCollector().onLog });
  try {
    const first = kernel.upgrade(sequenceRelease('0.2.0'));
    await assert.rejects(kernel.upgrade(sequenceRelease('0.3.0')), { code: 'E_SWAP_IN_PROGRESS' });
    assert.equal((await first).outcome, 'switched');
  } finally {
    await kernel.stop();
  }
});

test('init that never returns fails the start with E_INIT_TIMEOUT and leaves no thread behind', async () => {
  const threadsBefore = await osThreadCount();
  await assert.rejects(
    Kernel.start({ release: '1.0.0', services: { stuck: { entry: fixture('init-hangs') } }, initTimeoutMs: 300, onLog: logCollector().onLog }),
    { code: 'E_INIT_TIMEOUT' },
  );
  // Each worker is one OS thread: the stuck worker, had it been left running, would be one more.
  assert.equal(await osThreadCount(), threadsBefore, 'the stuck worker\'s thread is gone');
});

test('several services swap together or none does: one failing migration rolls both back under load', async () => {
  const kernel = await Kernel.start({
    release: '1.0.0',
    services: { gateway: { entry: fixture('gateway-v1') }, counter: { entry: fixture('counter-v1') } },
    onLog: logCollector().onLog,
  });
  try {
    const gateway = kernel.client<{ bump(n: number): Promise<number>; forwarded(): Promise<number> }>('gateway');
    const counter = kernel.client<{ add(n: number): Promise<number>; get(): Promise<number> }>('counter');
    let stop = false;
    let requests = 0;
    const failures: unknown[] = [];
    const loops = Array.from({ length: 20 }, async () => {
      while (!stop) {
        requests++;
        await gateway.bump(3).catch((error: unknown) => {
          failures.push(error);
          stop = true;
        });
      }
    });
    await new Promise((resolve) => setTimeout(resolve, 100));
    const error = await kernel
      .upgrade({ release: '1.1.0', services: { gateway: { entry: fixture('gateway-migration-throws') }, counter: { entry: fixture('counter-v2') } } })
      .catch((failure: unknown) => failure);
    await new Promise((resolve) => setTimeout(resolve, 100));
    stop = true;
    await Promise.all(loops);
    assert.ok(error instanceof SwapError);
    assert.equal(error.code, 'E_MIGRATION_FAILED');
    assert.equal(error.report.outcome, 'rolled-back');
    // Neither switched: both still run 1.0.0, and every request's three adds happened once.
    for (const service of error.report.services) assert.equal(service.outcome, 'rolled-back');
    const status = await kernel.status();
    assert.deepEqual(status.map((s) => [s.name, s.release]).sort(), [['counter', '1.0.0'], ['gateway', '1.0.0']]);
    assert.deepEqual(failures, []);
    assert.equal(await counter.get(), requests * 3);
    assert.equal(await gateway.forwarded(), requests * 3);
  } finally {
    await kernel.stop();
  }
});

test('a down migration that throws rolls the downgrade back in the newer code', async () => {
  const kernel = await Kernel.start({ release: '1.1.0', services: { counter: { entry: fixture('counter-v2-bad-down') } }, onLog: logCollector().onLog });
  try {
    const counter = kernel.client<{ add(n: number): Promise<number>; get(): Promise<number> }>('counter');
    await counter.add(5);
    const pending = [counter.add(1), counter.add(1)];
    await assert.rejects(kernel.downgrade({ release: '1.0.0', services: { counter: { entry: fixture('counter-v1') } } }), (error: SwapError) => {
      assert.equal(error.code, 'E_MIGRATION_FAILED');
      assert.equal(error.phase, 'migrate');
      assert.match(error.message, /1 -> 0 \(down\).*history cannot be folded back/);
      return true;
    });
    assert.deepEqual(await Promise.all(pending), [6, 7]);
    assert.equal(await counter.add(1), 8);
    assert.equal((await kernel.status())[0]!.release, '1.1.0');
  } finally {
    await kernel.stop();
  }
});

test('a worker blocked past every timeout is ended and restarted: the blocked call fails, the queued one is served', async () => {
  const logs = logCollector();
  const kernel = await Kernel.start({
    release: '1.0.0',
    services: { blocker: { entry: fixture('blocker-v1') } },
    drainTimeoutMs: 100,
    controlTimeoutMs: 300,
    onLog: logs.onLog,
  });
  try {
    const blocker = kernel.client<{ block(ms: number): Promise<number>; get(): Promise<number> }>('blocker');
    // Settled outcomes are captured now: they reject while the swap is still being awaited.
    const blocked = blocker.block(3000).then(() => 'answered', (error: unknown) => error);
    const queued = blocker.get().then(() => 'answered', (error: unknown) => error);
    await new Promise((resolve) => setTimeout(resolve, 50));
    await assert.rejects(kernel.upgrade({ release: '1.1.0', services: { blocker: { entry: fixture('blocker-v2') } } }), {
      code: 'E_CONTROL_TIMEOUT',
      phase: 'suspend',
    });
    assert.equal(((await blocked) as TheseusError).code, 'E_SERVICE_DOWN');
    // The call queued behind it never started: it went to the restarted worker.
    assert.equal(await queued, 'answered');
    assert.equal(typeof (await blocker.get()), 'number');
    const [status] = await kernel.status();
    assert.equal(status!.state, 'running');
    assert.equal(status!.restarts, 1);
    assert.equal(status!.release, '1.0.0');
    assert.ok(logs.records.some((r) => /did not answer suspend/.test(r.message)));
  } finally {
    await kernel.stop();
  }
});

test('stop during a swap waits for it, and leaves no worker running', async () => {
  const before = await osThreadCount();
  const kernel = await Kernel.start({ ...sequenceRelease('0.1.0'), onLog: logCollector().onLog });
  const swap = kernel.upgrade(sequenceRelease('0.2.0'));
  await new Promise((resolve) => setTimeout(resolve, 5));
  await kernel.stop();
  await swap.catch(() => undefined);
  assert.ok((await osThreadCount()) <= before, 'a worker outlived kernel.stop()');
});
