// The seed's sequence server as the witness: 1000 concurrent callers keep calling nextNumber
// while the kernel swaps 0.1.0 <-> 0.2.0 forty times, then goes to 0.3.0 (state migration) and
// back. Every call must be answered exactly once, in order per caller, with consecutive numbers.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Kernel } from '../../kernel/index.ts';
import {
  checkSequenceInvariants,
  logCollector,
  sequenceRelease,
  startSequenceLoad,
  stepRuns,
  waitForCalls,
  type SequenceApi,
} from '../helpers.ts';

// An even number, so the last swap goes back to 0.1.0. Forty, not a hundred: past the first few
// swaps each one adds only time (about 0.9 s here) to the run, and .ci/run has 20 minutes for
// everything; `npm run soak` swaps for as long as it is asked to.
const SWAPS = 40;

test(`1000 concurrent callers through ${SWAPS} alternating swaps, then 0.3.0 and back: nothing lost, repeated or reordered`, async () => {
  const logs = logCollector();
  const kernel = await Kernel.start({ ...sequenceRelease('0.1.0'), onLog: logs.onLog });
  const startedAt = kernel.startedAt;
  const firstThread = kernel.threadIds[0];
  try {
    // 1000 callers over 50 ports, each caller keeping 2 calls in flight: ~2000 outstanding calls.
    const load = startSequenceLoad(kernel, { callers: 1000, ports: 50, inFlight: 2 });
    await waitForCalls(load, 2000);

    const pauses: number[] = [];
    for (let swap = 0; swap < SWAPS; swap++) {
      const target = swap % 2 === 0 ? '0.2.0' : '0.1.0';
      const report = await kernel.upgrade(sequenceRelease(target));
      assert.equal(report.outcome, 'switched');
      assert.equal(report.services[0]!.outcome, 'switched');
      assert.equal(report.services[0]!.to.release, target);
      pauses.push(report.services[0]!.pauseMs);
      await waitForCalls(load, 500);
    }
    // Now on 0.1.0 (the last swap went back). On to 0.2.0, then the migration to 0.3.0.
    await kernel.upgrade(sequenceRelease('0.2.0'));
    await waitForCalls(load, 500);
    const up = await kernel.upgrade(sequenceRelease('0.3.0'));
    assert.equal(up.services[0]!.from.vsn, '0');
    assert.equal(up.services[0]!.to.vsn, '1');
    assert.match(up.services[0]!.migration, /0 -> 1 \(up, in 0\.3\.0\)/);
    await waitForCalls(load, 500);

    // Under load, set the step to 3: from some point on, numbers go up by 3.
    kernel.client<SequenceApi>('sequence').incrementNumber(3);
    await waitForCalls(load, 2000);

    // Back to 0.2.0: the down migration runs in 0.3.0's code and the step returns to 1.
    const down = await kernel.downgrade(sequenceRelease('0.2.0'));
    assert.match(down.services[0]!.migration, /1 -> 0 \(down, in 0\.3\.0\)/);
    await waitForCalls(load, 2000);

    const result = await load.stop();
    const { sorted, problems } = checkSequenceInvariants(result);
    assert.deepEqual(problems, []);
    assert.ok(sorted.length > 30_000, `expected real load, got ${sorted.length} calls`);
    assert.equal(sorted[0], 456, 'numbering starts at init and nothing was skipped before the first reply');

    // Consecutive across every swap: steps of 1, then (after the cast on 0.3.0) 3, then 1 again.
    const runs = stepRuns(sorted);
    assert.deepEqual(
      runs.map((run) => run.step),
      [1, 3, 1],
      `steps between numbers: ${JSON.stringify(runs)}`,
    );

    // The migration's own log lines carry the service and the release they ran in.
    const changing = logs.records.find((r) => r.message === 'Changing code from 0 to 1');
    assert.ok(changing, 'the up migration logged');
    assert.equal(changing.service, 'sequence');
    assert.equal(changing.release, '0.3.0');
    assert.ok(logs.records.some((r) => r.message === 'Changing code from 1 to 0' && r.release === '0.3.0'));

    // The kernel never restarted; each swap ran in a new worker and only the newest remains.
    assert.equal(kernel.startedAt, startedAt);
    assert.equal(kernel.threadIds.length, 1);
    assert.notEqual(kernel.threadIds[0], firstThread);
    assert.equal(kernel.strayReplies, 0, 'no call was answered twice');
    assert.equal(pauses.length, SWAPS);
    // The kernel's own count agrees: every call it served reached a caller, across SWAPS + 3 workers.
    const [status] = await kernel.status();
    assert.equal(status!.callsServed, sorted.length);
    assert.equal(status!.castsServed, 1);
  } finally {
    await kernel.stop();
  }
});
