// A swap of a whole release may add and remove services (SwapTarget.complete), through the Kernel
// API: the example's 0.4.0 adds an audit log that the sequence server casts every number to, and
// 0.5.0 removes it again. Under load the sequence invariants hold through both, the removed
// service's last state is kept (here in memory: no stateDir) and a downgrade resumes from it; a
// failing added service or a removal of a service still used leaves exactly the old set running.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Kernel } from '../../kernel/index.ts';
import type { TheseusError } from '../../kernel/common/errors.ts';
import type { AuditState } from '../../services/sequence/0.4.0/audit.ts';
import { checkSequenceInvariants, fixture, logCollector, root, startSequenceLoad, waitForCalls, waitUntil, type SequenceApi } from '../helpers.ts';

const entry = (version: string, service = 'sequence') => `${root}services/sequence/${version}/${service}.ts`;
const withAudit = (version: string) => ({ release: version, complete: true, services: { sequence: { entry: entry(version) }, audit: { entry: entry('0.4.0', 'audit') } } });
const sequenceOnly = (version: string) => ({ release: version, complete: true, services: { sequence: { entry: entry(version) } } });

interface AuditApi {
  auditLog(): Promise<AuditState>;
}

test('0.3.0 -> 0.4.0 adds the audit log, 0.5.0 removes it, a downgrade to 0.4.0 brings it back with its kept state, under load', async () => {
  const kernel = await Kernel.start({ ...sequenceOnly('0.3.0'), onLog: logCollector().onLog });
  const load = startSequenceLoad(kernel, { callers: 8, ports: 4, inFlight: 4 });
  try {
    await waitForCalls(load, 200);
    const added = await kernel.upgrade(withAudit('0.4.0'));
    assert.deepEqual(
      added.services.map((s) => [s.service, s.change, s.outcome]).sort(),
      [
        ['audit', 'added', 'switched'],
        ['sequence', 'code', 'switched'],
      ],
    );
    assert.deepEqual(kernel.services.sort(), ['audit', 'sequence']);
    await waitForCalls(load, 300);
    const audit = kernel.client<AuditApi>('audit');
    // The casts to the audit log travel on the sequence's own port, a little behind the replies.
    let seen = await audit.auditLog();
    await waitUntil(`the audit log to see 300 numbers handed out since 0.4.0 (${seen.count})`, async () => (seen = await audit.auditLog()).count >= 300);
    assert.equal(seen.outOfOrder, 0);

    const removed = await kernel.upgrade(sequenceOnly('0.5.0'));
    assert.deepEqual(
      removed.services.map((s) => [s.service, s.change, s.outcome]).sort(),
      [
        ['audit', 'removed', 'switched'],
        ['sequence', 'code', 'switched'],
      ],
    );
    assert.deepEqual(kernel.services, ['sequence']);
    // A client made before the removal, and a new one, are told it was removed: no hang.
    await assert.rejects(audit.auditLog(), { code: 'E_SERVICE_REMOVED' });
    assert.throws(() => kernel.client<AuditApi>('audit'), { code: 'E_SERVICE_REMOVED' });
    const kept = await kernel.keptStates();
    assert.deepEqual(kept.map((state) => [state.service, state.release]), [['audit', '0.4.0']]);
    await waitForCalls(load, 200);

    await kernel.downgrade(withAudit('0.4.0'));
    await waitForCalls(load, 200);
    const resumed = await kernel.client<AuditApi>('audit').auditLog();
    assert.equal(resumed.first, seen.first, 'the audit log resumed from its kept state, not from init()');
    assert.ok(resumed.count > seen.count, `it went on counting (${seen.count} -> ${resumed.count})`);
    assert.equal(resumed.outOfOrder, 0);
    assert.deepEqual(await kernel.keptStates(), []);

    await kernel.downgrade(sequenceOnly('0.3.0'));
    await waitForCalls(load, 200);
    const result = await load.stop();
    const { problems } = checkSequenceInvariants(result);
    assert.deepEqual(problems, []);
    assert.equal(kernel.strayReplies, 0);
  } finally {
    await load.stop();
    await kernel.stop();
  }
});

test('an added service that fails to boot, a failed migration next to an added service, or a removal of a service still used, leaves exactly the old set', async () => {
  // 0.2.0: its state is vsn 0, so a swap to 0.3.0's code has a migration to run (and to fail).
  const kernel = await Kernel.start({ ...sequenceOnly('0.2.0'), onLog: logCollector().onLog });
  try {
    const seq = kernel.client<SequenceApi>('sequence');
    const before = await seq.nextNumber();
    const failing = { ...withAudit('0.4.0'), services: { sequence: { entry: entry('0.4.0') }, audit: { entry: fixture('bad-init-state') } } };
    const error = (await kernel.upgrade(failing).then(
      () => null,
      (e: unknown) => e,
    )) as TheseusError & { report: { outcome: string } };
    assert.ok(error, 'the upgrade failed');
    assert.equal(error.phase, 'prepare');
    assert.equal(error.report.outcome, 'rolled-back');
    assert.deepEqual(kernel.services, ['sequence']);
    assert.throws(() => kernel.client('audit'), { code: 'E_UNKNOWN_SERVICE' });
    assert.equal(await seq.nextNumber(), `The next number is ${Number(String(before).split(' ').pop()) + 1}`);

    // Past prepare too: the audit log booted and took its state, then the sequence's migration throws.
    const migrateFails = { release: '0.3.5', complete: true, services: { sequence: { entry: fixture('sequence-migration-throws') }, audit: { entry: entry('0.4.0', 'audit') } } };
    await assert.rejects(kernel.upgrade(migrateFails), { code: 'E_MIGRATION_FAILED', phase: 'migrate' });
    assert.deepEqual(kernel.services, ['sequence']);
    assert.deepEqual(await kernel.keptStates(), [], 'the audit log that never opened left no state behind');

    await kernel.upgrade(withAudit('0.4.0'));
    // 0.4.0's sequence still uses the audit log: a release that leaves only it is refused.
    await assert.rejects(kernel.upgrade({ release: '0.4.1', complete: true, services: { sequence: { entry: entry('0.4.0') } } }), { code: 'E_REMOVED_STILL_USED', phase: 'check' });
    assert.deepEqual(kernel.services.sort(), ['audit', 'sequence']);
    assert.equal((await kernel.client<AuditApi>('audit').auditLog()).count, 0);
    await seq.nextNumber();
    // The sequence casts the number to the audit log on its own port, so the cast may land after
    // a read sent now on the kernel's port: wait for it (once, never twice).
    let count = 0;
    await waitUntil('the audit log to record the number', async () => (count = (await kernel.client<AuditApi>('audit').auditLog()).count) >= 1);
    assert.equal(count, 1);
  } finally {
    await kernel.stop();
  }
});
