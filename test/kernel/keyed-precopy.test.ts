// Keyed state and its pre-copy: a swap copies the store to the new worker while the old one
// serves, then only the keys written since. The witness: every caller's counter lives in the
// store and every call writes it, so a write lost or doubled in any round shows as a gap or a
// repeat in that caller's numbers; the small state's sequence shows the same for `state`.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Kernel, SwapError } from '../../kernel/index.ts';
import { fixture, logCollector, waitUntil } from '../helpers.ts';

interface KeyedApi {
  next(caller: string): Promise<{ seq: number; n: number; vsn: number }>;
  fill(from: number, count: number, bytes: number): Promise<number>;
  get(key: string): Promise<unknown>;
  size(): Promise<number>;
  touch(i: number, k: number): Promise<number>;
  many(keys: string[]): Promise<unknown[]>;
  crash(): Promise<never>;
}

const FILLER = 20_000;
const CALLERS = 1000;

function release(version: string, variant = version === '0.1.0' ? 'keyed-v1' : 'keyed-v2') {
  return { release: version, services: { keyed: { entry: fixture(variant) } } };
}

async function startFilled(extra: Partial<Parameters<typeof Kernel.start>[0]> = {}) {
  const kernel = await Kernel.start({ ...release('0.1.0'), onLog: logCollector().onLog, ...extra });
  const keyed = kernel.client<KeyedApi>('keyed');
  for (let from = 0; from < FILLER; from += 5000) await keyed.fill(from, 5000, 100);
  return { kernel, keyed };
}

/**
 * Callers that each call next() one after another, writing their own key on every call; and one
 * that rewrites filler entries across the whole store, each mostly once, so that a write made
 * after its key was copied and never repeated is lost unless a later round or the pause sends it.
 */
function startCallers(keyed: KeyedApi) {
  const replies = new Map<string, Array<{ seq: number; n: number; vsn: number }>>();
  const failures: unknown[] = [];
  const lastStamp = new Map<number, number>();
  let running = true;
  let answered = 0;
  const toucher = (async () => {
    for (let k = 1; running; k++) {
      const i = (k * 7919) % FILLER;
      try {
        await keyed.touch(i, k);
      } catch (error) {
        failures.push(error);
        return;
      }
      lastStamp.set(i, k);
    }
  })();
  const loops = Array.from({ length: CALLERS }, async (_, index) => {
    const caller = `caller-${index}`;
    const mine: Array<{ seq: number; n: number; vsn: number }> = [];
    replies.set(caller, mine);
    while (running) {
      try {
        mine.push(await keyed.next(caller));
        answered++;
      } catch (error) {
        failures.push(error);
        return;
      }
    }
  });
  return {
    answered: () => answered,
    failures,
    async stop() {
      running = false;
      await Promise.all([...loops, toucher]);
      return replies;
    },
    /** Filler entries whose value is not the last one written to them. */
    async staleEntries(): Promise<string[]> {
      const touched = [...lastStamp.keys()];
      const values = (await keyed.many(touched.map((i) => `f:${i}`))) as Array<{ k?: number } | null>;
      return touched.filter((i, index) => values[index]?.k !== lastStamp.get(i)).map((i) => `f:${i}`).slice(0, 10);
    },
  };
}

/** Every caller's counter went 1, 2, 3, ... and the sequence numbers are each used once, with no gap. */
function checkInvariants(replies: Map<string, Array<{ seq: number; n: number }>>, probes: number[]): string[] {
  const problems: string[] = [];
  const seqs: number[] = [...probes];
  for (const [caller, mine] of replies) {
    mine.forEach((reply, index) => {
      if (reply.n !== index + 1) problems.push(`${caller}'s call ${index + 1} got counter ${reply.n}`);
      seqs.push(reply.seq);
    });
  }
  seqs.sort((a, b) => a - b);
  seqs.forEach((seq, index) => {
    if (index > 0 && seq !== seqs[index - 1]! + 1) problems.push(`sequence ${seqs[index - 1]} followed by ${seq}`);
  });
  return problems.slice(0, 10);
}

async function moreCalls(load: { answered(): number; failures: unknown[] }, count: number) {
  const target = load.answered() + count;
  await waitUntil(`${count} more calls`, () => load.answered() >= target || load.failures.length > 0, { timeoutMs: 60_000 });
  assert.deepEqual(load.failures, []);
}

test('a keyed store is pre-copied while it serves, through upgrades and downgrades, with every write kept', async () => {
  // Round after round while the callers write: each later round sends the keys written during the one before.
  const { kernel, keyed } = await startFilled({ precopy: { stopAtKeys: 0, maxRounds: 4 } });
  const rounds: number[] = [];
  const load = startCallers(keyed);
  const probes: number[] = [];
  try {
    await moreCalls(load, 2000);
    for (const [target, vsn] of [
      ['0.2.0', 2],
      ['0.1.0', 1],
      ['0.2.0', 2],
    ] as const) {
      const report = target === '0.1.0' ? await kernel.downgrade(release(target)) : await kernel.upgrade(release(target));
      assert.equal(report.outcome, 'switched');
      const [service] = report.services;
      assert.ok(service!.precopy, 'the store was pre-copied');
      assert.ok(service!.precopy.entries >= FILLER, `the first round sent every entry (${service!.precopy.entries})`);
      rounds.push(service!.precopy.rounds);
      await moreCalls(load, 2000);
      const probe = await keyed.next('probe');
      probes.push(probe.seq);
      assert.equal(probe.vsn, vsn);
    }
    const replies = await load.stop();
    assert.deepEqual(load.failures, []);
    assert.ok(Math.max(...rounds) >= 2, `some swap copied more than one round (rounds: ${rounds.join(', ')})`);
    assert.deepEqual(checkInvariants(replies, probes), []);
    assert.deepEqual(await load.staleEntries(), []);
    // The store itself agrees with what the callers saw, entry migrations included.
    for (const [caller, mine] of replies) assert.deepEqual(await keyed.get(`c:${caller}`), { n: mine.length, v: 2 });
    assert.equal(((await keyed.get('f:12345')) as { text: string }).text, 'x'.repeat(100));
    assert.equal(await keyed.size(), FILLER + CALLERS + 1);
  } finally {
    await load.stop();
    await kernel.stop();
  }
});

for (const failure of [
  { variant: 'keyed-v2-up-throws', code: 'E_MIGRATION_FAILED', what: 'the small state migration throws after the store was pre-copied' },
  { variant: 'keyed-v2-entry-throws', code: 'E_ENTRY_MIGRATION_FAILED', what: 'an entry migration throws during the pre-copy' },
]) {
  test(`a roll-back when ${failure.what}: the old worker keeps every write, and the next swap works`, async () => {
    const { kernel, keyed } = await startFilled();
    const load = startCallers(keyed);
    try {
      await moreCalls(load, 300);
      const error = await kernel.upgrade(release('0.2.0', failure.variant)).catch((caught: unknown) => caught);
      assert.ok(error instanceof SwapError, String(error));
      assert.equal(error.code, failure.code);
      assert.equal(error.report.outcome, 'rolled-back');
      await moreCalls(load, 300);
      const probe = await keyed.next('probe');
      assert.equal(probe.vsn, 1);
      // The old worker stopped tracking its writes with the failed copy: a new swap copies afresh.
      const report = await kernel.upgrade(release('0.2.0'));
      assert.equal(report.outcome, 'switched');
      assert.ok(report.services[0]!.precopy!.entries >= FILLER);
      await moreCalls(load, 300);
      const replies = await load.stop();
      assert.deepEqual(checkInvariants(replies, [probe.seq]), []);
      assert.deepEqual(await load.staleEntries(), []);
      for (const [caller, mine] of replies) assert.deepEqual(await keyed.get(`c:${caller}`), { n: mine.length, v: 2 });
    } finally {
      await load.stop();
      await kernel.stop();
    }
  });
}

test('keyed state rides a stop and a start (its checkpoint holds the store), and cannot be turned off by a swap', async () => {
  const stateDir = await mkdtemp(join(tmpdir(), 'theseus-keyed-'));
  try {
    const first = await startFilled({ stateDir });
    await first.keyed.next('a');
    await first.keyed.next('a');
    await first.kernel.stop();

    const kernel = await Kernel.start({ ...release('0.1.0'), stateDir, onLog: logCollector().onLog });
    try {
      const keyed = kernel.client<KeyedApi>('keyed');
      assert.equal(await keyed.size(), FILLER + 1);
      assert.deepEqual(await keyed.next('a'), { seq: 3, n: 3, vsn: 1 });
      await assert.rejects(kernel.upgrade({ release: '0.2.0', services: { keyed: { entry: fixture('counter-v1') } } }), {
        code: 'E_KEYED_CHANGED',
        phase: 'check',
      });
      assert.deepEqual(await keyed.next('a'), { seq: 4, n: 4, vsn: 1 });
    } finally {
      await kernel.stop();
    }
  } finally {
    await rm(stateDir, { recursive: true, force: true });
  }
});

test('a worker that crashes right after a pre-copied swap restarts with the whole store, in the new code', async () => {
  const { kernel, keyed } = await startFilled();
  try {
    for (let i = 0; i < 5; i++) await keyed.next('a');
    const report = await kernel.upgrade(release('0.2.0'));
    assert.ok(report.services[0]!.precopy, 'the store was pre-copied');
    const restarted = new Promise<void>((resolve) => kernel.onRestart(() => resolve()));
    await assert.rejects(keyed.crash());
    await restarted;
    assert.deepEqual(await keyed.next('a'), { seq: 6, n: 6, vsn: 2 });
    assert.equal(await keyed.size(), FILLER + 1);
    assert.deepEqual(await keyed.get('c:a'), { n: 6, v: 2 });
  } finally {
    await kernel.stop();
  }
});
