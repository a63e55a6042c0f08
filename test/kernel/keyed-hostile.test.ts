// Hostile uses of keyed state (keyed: true, ctx.store) and of its pre-copy in a swap: values and
// keys the store must refuse, keys that are odd but valid, writes that race the copy (deletes,
// re-adds, a store emptied mid-copy, held there by a new worker blocked in its entry migration),
// entry migrations that misbehave, roll-backs, back-to-back swaps, a stop during a copy, reply
// durability, stateCheck 'every-change', and swaps that try to turn keyed state on or off.

import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { Kernel, SwapError, type TheseusError } from '../../kernel/index.ts';
import { readCheckpoint } from '../../kernel/common/checkpoints.ts';
import { decodeState } from '../../kernel/common/state-codec.ts';
import { tempDir } from '../release/helpers.ts';
import { fixture, logCollector, waitUntil } from '../helpers.ts';

type Key = string | number;

interface HostileApi {
  put(key: Key, value: unknown): Promise<number>;
  putBad(key: Key, kind: string): Promise<number>;
  putBadKey(kind: string): Promise<number>;
  fill(prefix: string, from: number, count: number, bytes: number): Promise<number>;
  putHuge(key: Key, megabytes: number): Promise<number>;
  hugeOf(key: Key): Promise<{ length: number; last: string; rest: Record<string, unknown> } | null>;
  get(key: Key): Promise<{ value: unknown } | null>;
  has(key: Key): Promise<boolean>;
  del(key: Key): Promise<boolean>;
  wipe(): Promise<number>;
  size(): Promise<number>;
  dump(): Promise<Array<[Key, unknown]>>;
  dumpWithout(prefix: string): Promise<Array<[Key, unknown]>>;
  setThenThrow(key: Key, value: unknown): Promise<never>;
  mutateAfterSet(key: Key): Promise<number>;
  next(): Promise<{ seq: number; vsn: number }>;
  badState(key: Key): Promise<number>;
  vsn(): Promise<number>;
  bumpInPlace(key: Key): Promise<number>;
  poisonUp(on: boolean): Promise<boolean>;
  slide(count: number, window: number): Promise<number>;
  crash(): Promise<never>;
  crashOnceAt(vsn: number, marker: string): Promise<number>;
  spread(): Promise<boolean>;
}

const variants = { '0.1.0': 'keyed-hostile-v1', '0.2.0': 'keyed-hostile-v2', '0.3.0': 'keyed-hostile-v3' } as const;
type Version = keyof typeof variants;

/** A release of the given keyed services, each at the code of `version`. */
function release(version: Version, names: string[] = ['hostile'], extra: Record<string, unknown> = {}) {
  return { release: version, services: Object.fromEntries(names.map((name) => [name, { entry: fixture(variants[version]), ...extra }])) };
}

async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught as TheseusError,
  );
  return error?.code;
}

async function swapFailure(promise: Promise<unknown>): Promise<SwapError> {
  const error = await promise.then(
    () => new Error('the swap went through'),
    (caught: unknown) => caught,
  );
  assert.ok(error instanceof SwapError, String(error));
  return error;
}

test('the store refuses values that are not plain data and keys that are not strings or finite numbers, and keeps what it had', async () => {
  const kernel = await Kernel.start({
    release: '0.1.0',
    services: { hostile: { entry: fixture('keyed-hostile-v1') }, strict: { entry: fixture('keyed-hostile-strict') }, plain: { entry: fixture('keyed-hostile-plain') } },
    onLog: logCollector().onLog,
  });
  try {
    const store = kernel.client<HostileApi>('hostile');
    await store.put('k', { n: 1 });
    for (const kind of ['function', 'class', 'symbol', 'map-with-function', 'nested-function', 'undefined', 'proxy', 'getter', 'shared-buffer', 'weakmap', 'promise', 'buffer']) {
      // Over a key that holds a value, and on a new key: neither changes.
      for (const key of ['k', `new-${kind}`]) {
        const error = await store.putBad(key, kind).then(
          () => null,
          (caught: TheseusError) => caught,
        );
        assert.ok(error, `${kind} at ${key} was accepted`);
        assert.equal(error.code, 'E_STATE_NOT_CLONEABLE', `${kind}: ${error.message}`);
        assert.match(error.message, new RegExp(`store\\.set\\(${JSON.stringify(key)}\\)`), `the message names the key: ${error.message}`);
      }
      assert.deepEqual(await store.get('k'), { value: { n: 1 } }, `the value of k after a ${kind}`);
      assert.equal(await store.has(`new-${kind}`), false);
    }
    for (const kind of ['object', 'array', 'NaN', 'Infinity', '-Infinity', 'null', 'undefined', 'symbol', 'bigint', 'boolean']) {
      const error = await store.putBadKey(kind).then(
        () => null,
        (caught: TheseusError) => caught,
      );
      assert.equal(error?.code, 'E_STORE_BAD_KEY', `key ${kind}: ${error?.message}`);
      assert.match(error.message, /strings or finite numbers/);
    }
    assert.equal(await store.size(), 1);

    // A write is kept though its handler throws afterwards (the store changes in place).
    assert.equal(await codeOf(store.setThenThrow('thrown', { n: 2 })), 'E_HANDLER_FAILED');
    assert.deepEqual(await store.get('thrown'), { value: { n: 2 } });

    // stateCheck 'every-change': a bad next state fails the call and is not kept; the store write before it is.
    const strict = kernel.client<HostileApi>('strict');
    assert.deepEqual(await strict.next(), { seq: 1, vsn: 1 });
    assert.equal(await codeOf(strict.badState('before-bad-state')), 'E_STATE_NOT_CLONEABLE');
    assert.deepEqual(await strict.next(), { seq: 2, vsn: 1 });
    assert.deepEqual(await strict.get('before-bad-state'), { value: { n: 1 } });
    assert.equal(await codeOf(strict.putBad('x', 'function')), 'E_STATE_NOT_CLONEABLE');

    // A service that is not keyed: ctx.store says so, and a spread of the context does not throw.
    const plain = kernel.client<HostileApi>('plain');
    const notKeyed = await plain.put('k', 1).catch((caught: TheseusError) => caught);
    assert.equal((notKeyed as TheseusError).code, 'E_NOT_KEYED');
    assert.match((notKeyed as TheseusError).message, /keyed: true/);
    assert.equal(await plain.spread(), false);

    // health() reads the store.
    assert.deepEqual(await kernel.health('hostile'), { healthy: true });
    await store.put('unhealthy', 1);
    assert.equal((await kernel.health('hostile')).healthy, false);
  } finally {
    await kernel.stop();
  }
});

/** What each entry of `model` (the keys as set at vsn 1) looks like after the entry migrations up to `vsn`. */
function migrated(model: Map<Key, Record<string, unknown>>, vsn: 1 | 2 | 3): Array<[Key, unknown]> {
  return [...model].map(([key, value]) => [key, vsn === 1 ? value : vsn === 2 ? { ...value, up2: key } : { ...value, up2: key, up3: true }]);
}

function sortedEntries(entries: Array<[Key, unknown]>): Array<[Key, unknown]> {
  const order = (key: Key) => `${typeof key}:${String(key)}`;
  return [...entries].sort(([a], [b]) => (order(a) < order(b) ? -1 : order(a) > order(b) ? 1 : 0));
}

test('odd keys, a value of several MB and an empty store ride swaps up two steps at once, back to back, and down again', async () => {
  const kernel = await Kernel.start({ ...release('0.1.0', ['hostile', 'empty']), onLog: logCollector().onLog });
  try {
    const store = kernel.client<HostileApi>('hostile');
    const empty = kernel.client<HostileApi>('empty');
    const model = new Map<Key, Record<string, unknown>>();
    const longKey = 'L'.repeat(100_000);
    for (const key of ['', '__proto__', 'constructor', 'toString', 'hasOwnProperty', longKey, 0, '0', 1.5, -7, Number.MAX_VALUE, '\u{1F600}', '\ud800']) {
      const value = { n: model.size, key: typeof key === 'string' ? key.slice(0, 20) : key };
      await store.put(key, value);
      model.set(key, value);
    }
    // -0 is the key 0 (a Map's SameValueZero), not a key of its own.
    await store.put(-0, { n: 'minus zero' });
    model.set(0, { n: 'minus zero' });
    assert.deepEqual(await store.get(0), { value: { n: 'minus zero' } });
    assert.deepEqual(await store.get('0'), { value: model.get('0') }, 'the number 0 and the string "0" are two keys');
    await store.putHuge('huge', 8);
    const filler = 10_000;
    await store.fill('f:', 0, filler, 50);

    const check = async (vsn: 1 | 2 | 3) => {
      assert.equal(await store.vsn(), vsn);
      assert.deepEqual(sortedEntries(await store.dumpWithout('f:')).filter(([key]) => key !== 'huge'), sortedEntries(migrated(model, vsn)));
      const huge = await store.hugeOf('huge');
      assert.equal(huge?.length, 8 * 1024 * 1024);
      assert.equal(huge?.last, 'Z');
      assert.equal(await store.size(), model.size + 1 + filler);
      assert.deepEqual(await store.get(`f:${filler - 1}`), { value: migrated(new Map([[`f:${filler - 1}`, { n: filler - 1, text: 'x'.repeat(50) }]]), vsn)[0]![1] });
      assert.equal(await empty.size(), 0);
      assert.equal(await empty.vsn(), vsn);
    };

    // A second swap asked for while one runs is refused, and leaves the first alone.
    const first = kernel.upgrade(release('0.2.0', ['hostile', 'empty']));
    assert.equal(await codeOf(kernel.upgrade(release('0.3.0', ['hostile', 'empty']))), 'E_SWAP_IN_PROGRESS');
    const report = await first;
    assert.equal(report.outcome, 'switched');
    const byName = new Map(report.services.map((service) => [service.service, service]));
    assert.ok(byName.get('hostile')!.precopy!.entries >= model.size + 1 + filler, 'every entry went in the pre-copy');
    assert.equal(byName.get('empty')!.precopy?.entries, 0, 'an empty store pre-copies nothing');
    await check(2);
    // Back to back, then down two steps at once: each step's entry migration runs on every entry.
    assert.equal((await kernel.upgrade(release('0.3.0', ['hostile', 'empty']))).outcome, 'switched');
    await check(3);
    assert.equal((await kernel.downgrade(release('0.1.0', ['hostile', 'empty']))).outcome, 'switched');
    await check(1);
    assert.equal((await kernel.upgrade(release('0.3.0', ['hostile', 'empty']))).outcome, 'switched');
    await check(3);
  } finally {
    await kernel.stop();
  }
});

/** Removes a service's checkpoint, so the next start begins from init. */
async function rmCheckpoint(stateDir: string, service = 'hostile'): Promise<void> {
  await rm(join(stateDir, `${service}.ckpt`), { force: true });
}

/** A gate file pair (see holdAtGate in the fixtures): the new worker says it waits, the test lets it go. */
function gateAt(dir: string, name: string) {
  const path = join(dir, name);
  return {
    path,
    entered: () => waitUntil(`the new worker to wait at ${name}`, () => existsSync(`${path}.entered`), { timeoutMs: 30_000 }),
    open: () => writeFileSync(`${path}.open`, ''),
  };
}

test('deletes, a delete and re-add between rounds, and a store emptied in the middle of the pre-copy reach the new worker exactly', async () => {
  const dir = await tempDir('theseus-keyed-gate-');
  // Every round runs (nothing is left for the pause unless written after the last one).
  const kernel = await Kernel.start({ ...release('0.1.0'), precopy: { stopAtKeys: 0, maxRounds: 8 }, onLog: logCollector().onLog });
  try {
    const store = kernel.client<HostileApi>('hostile');
    const first = gateAt(dir, 'round-1');
    const second = gateAt(dir, 'round-2');
    // The gate key goes first, so the first chunk blocks the new worker and the rest of round one waits.
    await store.put('gate', { gate: first.path });
    await store.put('g2', { n: 'g2' });
    await store.fill('f:', 0, 20_000, 20);
    const swap = kernel.upgrade(release('0.2.0'));
    swap.catch(() => undefined);

    await first.entered();
    // Round one is under way: f:10 was sent, f:19010 not yet (chunks hold 4096 keys, four ahead at most).
    assert.equal(await store.del('f:10'), true);
    assert.equal(await store.del('f:19010'), true);
    // Written during round one, so sent in round two, where it holds the new worker again.
    await store.put('g2', { gate: second.path });
    first.open();

    await second.entered();
    await store.put('f:10', { n: 'back' });
    assert.equal(await store.wipe(), 0, 'the store is empty in the middle of the copy');
    await store.put('f:10', { n: 'back again' });
    await store.put('f:19010', { n: 'late' });
    await store.put('new', { n: 'new' });
    second.open();

    const report = await swap;
    assert.equal(report.outcome, 'switched');
    // Round two ran (its key held the new worker); what was written during it went in the pause
    // or in a third round, as the copy chose.
    assert.ok(report.services[0]!.precopy!.rounds >= 2, `two rounds at least (${JSON.stringify(report.services[0]!.precopy)})`);
    assert.equal(await store.vsn(), 2);
    assert.deepEqual(sortedEntries(await store.dump()), [
      ['f:10', { n: 'back again', up2: 'f:10' }],
      ['f:19010', { n: 'late', up2: 'f:19010' }],
      ['new', { n: 'new', up2: 'new' }],
    ]);
  } finally {
    await kernel.stop();
  }
});

/** The store as it must be: the filler and the named entries, at vsn 1. */
async function assertStore(store: HostileApi, named: Map<Key, unknown>, filler: number, vsn: 1 | 2) {
  assert.equal(await store.vsn(), vsn);
  const expected = [...named].map(([key, value]): [Key, unknown] => [key, vsn === 2 ? { ...(value as object), up2: key } : value]);
  assert.deepEqual(sortedEntries(await store.dumpWithout('f:')), sortedEntries(expected));
  assert.equal(await store.size(), named.size + filler);
}

for (const precopy of [{ maxRounds: 8 }, { maxRounds: 0 }]) {
  const where = precopy.maxRounds === 0 ? 'with pre-copy off (the whole store in the pause)' : 'during the pre-copy';
  test(`entry migrations that return undefined, a promise or no plain data, throw or end the thread ${where}: each rolls back with the store whole, checkpoints go on, and the next swap works`, async () => {
    const kernel = await Kernel.start({ ...release('0.1.0'), precopy, onLog: logCollector().onLog });
    try {
      const store = kernel.client<HostileApi>('hostile');
      const filler = 9000;
      await store.fill('f:', 0, filler, 20);
      const named = new Map<Key, unknown>([['a', { n: 1 }]]);
      await store.put('a', { n: 1 });
      for (const [poison, reason] of [
        ['undefined', /returned undefined/],
        ['promise', /returned a promise/],
        ['async', /returned a promise/],
        ['function', /not plain.*is a function/],
        ['throw', /entry p is poisoned/],
      ] as const) {
        await store.put('p', { poison });
        const error = await swapFailure(kernel.upgrade(release('0.2.0')));
        assert.equal(error.code, 'E_ENTRY_MIGRATION_FAILED', `${poison}: ${error.message}`);
        assert.equal(error.report.outcome, 'rolled-back');
        assert.match(error.message, /key "p"/);
        assert.match(error.message, reason);
        assert.equal(await store.del('p'), true);
        await assertStore(store, named, filler, 1);
      }
      // The new worker's thread ends while it migrates entries.
      await store.put('p', { poison: 'exit' });
      const exited = await swapFailure(kernel.upgrade(release('0.2.0')));
      assert.equal(exited.report.outcome, 'rolled-back');
      assert.ok(['E_WORKER_EXITED', 'E_HANDOFF_CLOSED'].includes(exited.code), exited.message);
      assert.equal(await store.del('p'), true);
      await assertStore(store, named, filler, 1);

      // The failed copies left nothing behind in the old worker: a checkpoint holds a write made
      // now, and a crash restarts from it.
      await store.put('after', { n: 2 });
      named.set('after', { n: 2 });
      await kernel.checkpoint(['hostile'], { fresh: true });
      const restarted = new Promise<void>((resolve) => kernel.onRestart(() => resolve()));
      await assert.rejects(store.crash());
      await restarted;
      await assertStore(store, named, filler, 1);

      const report = await kernel.upgrade(release('0.2.0'));
      assert.equal(report.outcome, 'switched');
      await assertStore(store, named, filler, 2);
    } finally {
      await kernel.stop();
    }
  });
}

test('a downgrade whose downEntry throws in the old worker rolls back; that worker still checkpoints, and the next downgrade works', async () => {
  const kernel = await Kernel.start({ ...release('0.2.0'), onLog: logCollector().onLog });
  try {
    const store = kernel.client<HostileApi>('hostile');
    await store.fill('f:', 0, 9000, 20);
    await store.put('bad', { n: 1, poisonDown: true });
    const error = await swapFailure(kernel.downgrade(release('0.1.0')));
    assert.equal(error.code, 'E_ENTRY_MIGRATION_FAILED', error.message);
    assert.equal(error.report.outcome, 'rolled-back');
    assert.match(error.message, /key "bad".*cannot go down/);
    assert.equal(await store.vsn(), 2);
    assert.equal(await store.size(), 9001);

    // A checkpoint taken now holds a write made now: a crash restarts from it.
    await store.put('after', { n: 2 });
    await kernel.checkpoint(['hostile'], { fresh: true });
    const restarted = new Promise<void>((resolve) => kernel.onRestart(() => resolve()));
    await assert.rejects(store.crash());
    await restarted;
    assert.deepEqual(await store.get('after'), { value: { n: 2 } });

    await store.del('bad');
    assert.equal((await kernel.downgrade(release('0.1.0'))).outcome, 'switched');
    assert.equal(await store.vsn(), 1);
    assert.deepEqual(await store.get('f:8999'), { value: { n: 8999, text: 'x'.repeat(20) } });
    assert.equal(await store.size(), 9001);
  } finally {
    await kernel.stop();
  }
});

test('kernel.stop() during a pre-copy lets the swap finish, and the next start finds the whole store in the new code', async () => {
  const stateDir = await tempDir('theseus-keyed-stop-');
  const kernel = await Kernel.start({ ...release('0.1.0'), stateDir, onLog: logCollector().onLog });
  const store = kernel.client<HostileApi>('hostile');
  const gate = gateAt(stateDir, 'stop');
  await store.put('gate', { gate: gate.path });
  await store.fill('f:', 0, 9000, 20);
  let swapSettled = false;
  const swap = kernel.upgrade(release('0.2.0'));
  void swap.finally(() => (swapSettled = true)).catch(() => undefined);
  await gate.entered();
  // Written while the copy is held: it must reach the new worker or stay with the old one.
  await store.put('during', { n: 'during' });
  const stopped = kernel.stop();
  gate.open();
  await stopped;
  assert.ok(swapSettled, 'the stop waited for the swap');
  // The stop let the swap finish: nothing was wrong with it, so it switched.
  assert.equal((await swap).outcome, 'switched');
  const again = await Kernel.start({ ...release('0.2.0'), stateDir, onLog: logCollector().onLog });
  try {
    const restored = again.client<HostileApi>('hostile');
    assert.equal(await restored.size(), 9002);
    assert.deepEqual(await restored.get('during'), { value: { n: 'during', up2: 'during' } });
  } finally {
    await again.stop();
  }
});

test("reply durability through a pre-copied swap: every reply's write is on disk, entries migrated, and a restart finds them", async () => {
  const stateDir = await tempDir('theseus-keyed-reply-');
  const onDisk = async (): Promise<Map<Key, unknown>> => {
    const checkpoint = await readCheckpoint(stateDir, 'hostile');
    assert.ok(checkpoint, 'a checkpoint exists');
    const whole = decodeState(checkpoint.snapshot.bytes) as { '~keyed': 1; entries: Map<Key, unknown> };
    assert.equal(whole['~keyed'], 1, 'the checkpoint holds the keyed store');
    return whole.entries;
  };
  const kernel = await Kernel.start({ ...release('0.1.0', ['hostile'], { durability: 'reply' }), stateDir, onLog: logCollector().onLog });
  try {
    const store = kernel.client<HostileApi>('hostile');
    await store.fill('f:', 0, 5000, 20);
    await store.put('a', { n: 1 });
    assert.deepEqual((await onDisk()).get('a'), { n: 1 }, 'the write is on disk when its reply arrives');
    // A failed handler's write is kept in memory, and so on disk too before its error is answered.
    assert.equal(await codeOf(store.setThenThrow('thrown', { n: 3 })), 'E_HANDLER_FAILED');
    assert.deepEqual((await onDisk()).get('thrown'), { n: 3 });

    const report = await kernel.upgrade(release('0.2.0', ['hostile'], { durability: 'reply' }));
    assert.equal(report.outcome, 'switched');
    assert.ok(report.services[0]!.precopy, 'the store was pre-copied');
    // The new worker writes what it adopted as it starts serving, before its first reply.
    assert.equal(await store.vsn(), 2);
    const afterSwap = await onDisk();
    assert.equal(afterSwap.size, 5002, 'the new worker wrote the whole store it adopted');
    assert.deepEqual(afterSwap.get('a'), { n: 1, up2: 'a' });
    await store.put('b', { n: 2 });
    assert.deepEqual((await onDisk()).get('b'), { n: 2 });
    assert.equal(await store.del('a'), true);
    assert.equal((await onDisk()).has('a'), false, 'a delete is on disk when its reply arrives');
  } finally {
    await kernel.stop();
  }
  const again = await Kernel.start({ ...release('0.2.0', ['hostile'], { durability: 'reply' }), stateDir, onLog: logCollector().onLog });
  try {
    const store = again.client<HostileApi>('hostile');
    assert.equal(await store.size(), 5002);
    assert.deepEqual(await store.get('b'), { value: { n: 2 } });
    assert.deepEqual(await store.get('f:4999'), { value: { n: 4999, text: 'x'.repeat(20), up2: 'f:4999' } });
  } finally {
    await again.stop();
  }
});

test('a swap may not turn keyed state off or on, and a pool may not be keyed: refused before anything is touched', async () => {
  const kernel = await Kernel.start({
    release: '0.1.0',
    services: { hostile: { entry: fixture('keyed-hostile-v1') }, plain: { entry: fixture('keyed-hostile-plain') } },
    onLog: logCollector().onLog,
  });
  try {
    const store = kernel.client<HostileApi>('hostile');
    const plain = kernel.client<HostileApi>('plain');
    await store.fill('f:', 0, 1000, 10);
    await plain.next();
    const before = await kernel.status();
    for (const services of [
      { hostile: { entry: fixture('keyed-hostile-plain') }, plain: { entry: fixture('keyed-hostile-plain') } },
      { hostile: { entry: fixture('keyed-hostile-v2') }, plain: { entry: fixture('keyed-hostile-v2') } },
    ]) {
      const error = await kernel.upgrade({ release: '0.2.0', services }).catch((caught: TheseusError) => caught);
      assert.equal((error as TheseusError).code, 'E_KEYED_CHANGED', String(error));
      assert.equal((error as TheseusError).phase, 'check');
      assert.match((error as TheseusError).message, /cannot turn keyed state on or off/);
    }
    const after = await kernel.status();
    assert.deepEqual(
      after.map(({ name, release, vsn, threadId, state }) => ({ name, release, vsn, threadId, state })),
      before.map(({ name, release, vsn, threadId, state }) => ({ name, release, vsn, threadId, state })),
      'the same workers serve, on the same release',
    );
    assert.equal(await store.size(), 1000);
    assert.deepEqual(await plain.next(), { seq: 2, vsn: 1 });
  } finally {
    await kernel.stop();
  }
  const pooled = await Kernel.start({ release: '0.1.0', services: { hostile: { entry: fixture('keyed-hostile-v1'), pool: { size: 2 } } }, onLog: logCollector().onLog }).catch(
    (caught: TheseusError) => caught,
  );
  if (pooled instanceof Kernel) await pooled.stop();
  assert.equal((pooled as TheseusError).code, 'E_POOLED_KEYED');
});

for (const precopy of [{ maxRounds: 8 }, { maxRounds: 0 }]) {
  const where = precopy.maxRounds === 0 ? 'with pre-copy off' : 'with pre-copy';
  test(
    `a value changed after it was set into something not plain: the swap ${where} rolls back with E_STATE_NOT_CLONEABLE naming the key`,
    async () => {
      const kernel = await Kernel.start({ ...release('0.1.0'), precopy, onLog: logCollector().onLog });
      try {
        const store = kernel.client<HostileApi>('hostile');
        await store.fill('f:', 0, 100, 10);
        await store.mutateAfterSet('m');
        const error = await swapFailure(kernel.upgrade(release('0.2.0')));
        assert.equal(error.report.outcome, 'rolled-back');
        assert.match(error.message, /get\("m"\)\.fn is a function/);
        assert.equal(error.code, 'E_STATE_NOT_CLONEABLE', error.message);
        assert.equal(await store.vsn(), 1);
        assert.equal(await store.size(), 101);
      } finally {
        await kernel.stop();
      }
    },
  );
}

test(
  'a value read from the store and changed where it lies (no set) during a pre-copy is not lost by the swap',
  async () => {
    const dir = await tempDir('theseus-keyed-inplace-');
    const kernel = await Kernel.start({ ...release('0.1.0'), onLog: logCollector().onLog });
    try {
      const store = kernel.client<HostileApi>('hostile');
      const gate = gateAt(dir, 'in-place');
      await store.put('gate', { gate: gate.path });
      await store.put('c', { n: 0 });
      const swap = kernel.upgrade(release('0.2.0'));
      swap.catch(() => undefined);
      await gate.entered();
      assert.equal(await store.bumpInPlace('c'), 1);
      gate.open();
      assert.equal((await swap).outcome, 'switched');
      assert.deepEqual(await store.get('c'), { value: { n: 1, up2: 'c' } });
    } finally {
      await kernel.stop();
    }
  },
);

/** Crashes the service's worker and waits for supervision to restart it. */
async function crashAndRestart(kernel: Kernel, store: HostileApi, service: string): Promise<void> {
  const restarted = new Promise<void>((resolve) => {
    const off = kernel.onRestart((name) => {
      if (name !== service) return;
      off();
      resolve();
    });
  });
  await assert.rejects(store.crash());
  await restarted;
}

test('roll-backs after a finished pre-copy, and in a swap where another keyed service fails its copy: the old workers checkpoint again, and the next swap copies afresh', async () => {
  const kernel = await Kernel.start({ ...release('0.1.0', ['a', 'b']), onLog: logCollector().onLog });
  try {
    const a = kernel.client<HostileApi>('a');
    const b = kernel.client<HostileApi>('b');
    for (const store of [a, b]) await store.fill('f:', 0, 9000, 20);
    const named = new Map<Key, unknown>();

    // Both stores are pre-copied, then a's small state fails its up migration in the pause.
    await a.poisonUp(true);
    const late = await swapFailure(kernel.upgrade(release('0.2.0', ['a', 'b'])));
    assert.equal(late.code, 'E_MIGRATION_FAILED', late.message);
    assert.equal(late.report.outcome, 'rolled-back');
    assert.ok(late.report.services.every((service) => service.precopy), 'both stores were pre-copied before the roll-back');
    await a.poisonUp(false);

    // a's copy succeeds while b's new worker fails on an entry.
    await b.put('p', { poison: 'throw' });
    const early = await swapFailure(kernel.upgrade(release('0.2.0', ['a', 'b'])));
    assert.equal(early.code, 'E_ENTRY_MIGRATION_FAILED', early.message);
    await b.del('p');

    for (const [name, store] of [['a', a], ['b', b]] as const) {
      await store.put(`after-${name}`, { n: name });
      await kernel.checkpoint([name], { fresh: true });
      await crashAndRestart(kernel, store, name);
      assert.deepEqual(await store.get(`after-${name}`), { value: { n: name } }, `${name} checkpointed the write made after the roll-backs`);
    }
    named.set('after-a', { n: 'a' });
    assert.equal((await kernel.upgrade(release('0.2.0', ['a', 'b']))).outcome, 'switched');
    await assertStore(a, named, 9000, 2);
    assert.equal(await b.size(), 9001);
  } finally {
    await kernel.stop();
  }
});

test('the old worker crashing in the middle of a pre-copy: the swap rolls back, the old code restarts and serves, and the next swap works', async () => {
  const dir = await tempDir('theseus-keyed-oldcrash-');
  const kernel = await Kernel.start({ ...release('0.1.0'), onLog: logCollector().onLog });
  try {
    const store = kernel.client<HostileApi>('hostile');
    const gate = gateAt(dir, 'old-crash');
    await store.put('gate', { gate: gate.path });
    await store.fill('f:', 0, 9000, 20);
    await kernel.checkpoint(['hostile'], { fresh: true });
    const swap = kernel.upgrade(release('0.2.0'));
    swap.catch(() => undefined);
    await gate.entered();
    const restarted = new Promise<void>((resolve) => kernel.onRestart(() => resolve()));
    await assert.rejects(store.crash());
    gate.open();
    const error = await swapFailure(swap);
    assert.equal(error.report.outcome, 'rolled-back', error.message);
    await restarted;
    assert.equal(await store.vsn(), 1);
    assert.equal(await store.size(), 9001);
    const gateEntry = await store.get('gate');
    assert.deepEqual(gateEntry, { value: { gate: gate.path } });
    assert.equal((await kernel.upgrade(release('0.2.0'))).outcome, 'switched');
    assert.equal(await store.size(), 9001);
    assert.deepEqual(await store.get('f:0'), { value: { n: 0, text: 'x'.repeat(20), up2: 'f:0' } });
  } finally {
    await kernel.stop();
  }
});

test(
  'a start on code that is keyed when the checkpoint is not (or the reverse) is refused naming keyed, and the checkpoint is kept',
  async () => {
    const stateDir = await tempDir('theseus-keyed-cold-');
    const start = (entry: string) => Kernel.start({ release: '0.1.0', services: { hostile: { entry: fixture(entry) } }, stateDir, onLog: logCollector().onLog });
    for (const [wrote, reads] of [
      ['keyed-hostile-v1', 'keyed-hostile-plain'],
      ['keyed-hostile-plain', 'keyed-hostile-v1'],
    ]) {
      await rmCheckpoint(stateDir);
      const first = await start(wrote!);
      await first.client<HostileApi>('hostile').next();
      await first.stop();
      const refused = await start(reads!).catch((caught: TheseusError) => caught);
      if (refused instanceof Kernel) await refused.stop();
      // Nothing lost: the code that wrote it still resumes from it.
      const again = await start(wrote!);
      try {
        assert.deepEqual(await again.client<HostileApi>('hostile').next(), { seq: 2, vsn: 1 });
      } finally {
        await again.stop();
      }
      assert.ok(!(refused instanceof Kernel), `${reads} started on a checkpoint of ${wrote}`);
      // The checkpoint is sound: what does not fit is the code, and the message says how.
      assert.equal((refused as TheseusError).code, 'E_CHECKPOINT_INCOMPATIBLE', (refused as TheseusError).message);
      assert.match((refused as TheseusError).message, /keyed/);
    }
  },
);

test('precopy and spareWorkers options that are not counts are refused at start', async () => {
  const options = [
    ...[{ maxRounds: -1 }, { maxRounds: Number.NaN }, { maxRounds: 'x' as unknown as number }, { stopAtKeys: -5 }].map((precopy) => ({ precopy })),
    // Infinity would start threads until the process runs out; 2.5 would quietly keep 3.
    ...[-1, 2.5, Number.POSITIVE_INFINITY, 17].map((spareWorkers) => ({ spareWorkers })),
  ];
  for (const option of options) {
    const started = await Kernel.start({ ...release('0.1.0'), ...option, onLog: logCollector().onLog }).catch((caught: TheseusError) => caught);
    if (started instanceof Kernel) await started.stop();
    assert.equal((started as TheseusError).code, 'E_BAD_OPTIONS', `${JSON.stringify(option)} was accepted`);
  }
});

for (const precopy of [{ maxRounds: 8 }, { maxRounds: 0 }]) {
  const copied = precopy.maxRounds > 0;
  test(
    `a new worker that crashes at once after a swap ${copied ? 'with' : 'without'} pre-copy restarts with the writes acknowledged before the switch`,
    async () => {
      const dir = await tempDir('theseus-keyed-newcrash-');
      const kernel = await Kernel.start({ ...release('0.1.0'), precopy, onLog: logCollector().onLog });
      try {
        const store = kernel.client<HostileApi>('hostile');
        const gate = gateAt(dir, 'new-crash');
        if (copied) await store.put('gate', { gate: gate.path });
        await store.fill('f:', 0, 9000, 20);
        await kernel.checkpoint(['hostile'], { fresh: true });
        const swap = kernel.upgrade(release('0.2.0'));
        swap.catch(() => undefined);
        // With pre-copy: acknowledged by the old worker while its store is held mid-copy (no
        // checkpoint is taken then). Without: acknowledged before the swap pauses it.
        if (copied) await gate.entered();
        await store.put('during', { n: 'during' });
        const restarted = new Promise<void>((resolve) => kernel.onRestart(() => resolve()));
        gate.open();
        // Asked again and again, by several callers, until the new code takes one: the calls waiting
        // through the pause are served first thing after the switch, before the kernel's checkpoint
        // of the new worker.
        const marker = join(dir, 'crashed');
        const crasher = Promise.all(
          Array.from({ length: 8 }, async () => {
            while (!existsSync(marker)) await store.crashOnceAt(2, marker).catch(() => undefined);
          }),
        );
        assert.equal((await swap).outcome, 'switched');
        await crasher;
        await restarted;
        assert.equal(await store.vsn(), 2);
        assert.deepEqual(await store.get('during'), { value: { n: 'during', up2: 'during' } }, 'the write acknowledged before the switch survived the crash');
        assert.equal(await store.size(), copied ? 9002 : 9001);
      } finally {
        await kernel.stop();
      }
    },
  );
}

test(
  "the store's order (a Map's insertion order, which an LRU relies on) is the same after a pre-copied swap",
  async () => {
    const dir = await tempDir('theseus-keyed-order-');
    const kernel = await Kernel.start({ ...release('0.1.0'), onLog: logCollector().onLog });
    try {
      const store = kernel.client<HostileApi>('hostile');
      const gate = gateAt(dir, 'order');
      await store.put('gate', { gate: gate.path });
      for (const key of ['a', 'b', 'c']) await store.put(key, { n: key });
      await store.fill('f:', 0, 100, 5);
      const swap = kernel.upgrade(release('0.2.0'));
      swap.catch(() => undefined);
      await gate.entered();
      // The least recently used goes last, the way an LRU moves a key it touches.
      await store.del('a');
      await store.put('a', { n: 'a, touched' });
      const before = (await store.dump()).map(([key]) => key);
      gate.open();
      assert.equal((await swap).outcome, 'switched');
      const after = (await store.dump()).map(([key]) => key);
      // Compared as text, so a failure shows the few keys that moved rather than every key.
      assert.equal(after.slice(0, 5).join(' ') + ' ... ' + after.slice(-3).join(' '), before.slice(0, 5).join(' ') + ' ... ' + before.slice(-3).join(' '));
      assert.deepEqual(after, before);
    } finally {
      await kernel.stop();
    }
  },
);

test('a checkpoint of a keyed store starts newer code two steps up, and older code down again, each entry migrated on the way', async () => {
  const stateDir = await tempDir('theseus-keyed-cold-migrate-');
  const resolveRelease = async (version: string) => (version in variants ? release(version as Version).services : null);
  const start = (version: Version) => Kernel.start({ ...release(version), stateDir, resolveRelease, onLog: logCollector().onLog });
  const first = await start('0.1.0');
  await first.client<HostileApi>('hostile').put('k', { n: 1 });
  await first.client<HostileApi>('hostile').fill('f:', 0, 500, 5);
  await first.stop();

  const newer = await start('0.3.0');
  try {
    const store = newer.client<HostileApi>('hostile');
    assert.deepEqual(await store.get('k'), { value: { n: 1, up2: 'k', up3: true } });
    assert.deepEqual(await store.get('f:499'), { value: { n: 499, text: 'xxxxx', up2: 'f:499', up3: true } });
    assert.equal(await store.size(), 501);
  } finally {
    await newer.stop();
  }
  // The checkpoint is now 0.3.0's: the older code gets it migrated down in 0.3.0's code.
  const older = await start('0.1.0');
  try {
    const store = older.client<HostileApi>('hostile');
    assert.deepEqual(await store.get('k'), { value: { n: 1 } });
    assert.equal(await store.size(), 501);
  } finally {
    await older.stop();
  }
});

test(
  'a new worker whose thread ends during the pre-copy: the error names the new worker, its release and its exit code',
  async () => {
    const kernel = await Kernel.start({ ...release('0.1.0'), onLog: logCollector().onLog });
    try {
      const store = kernel.client<HostileApi>('hostile');
      await store.fill('f:', 0, 100, 5);
      await store.put('p', { poison: 'exit' });
      const error = await swapFailure(kernel.upgrade(release('0.2.0')));
      assert.equal(error.report.outcome, 'rolled-back');
      assert.match(error.message, /hostile@0\.2\.0/);
      assert.doesNotMatch(error.message, /hostile@0\.1\.0/);
      assert.match(error.message, /exit code 9/);
    } finally {
      await kernel.stop();
    }
  },
);

test(
  'a sliding window (new keys in, oldest out) written faster than a round: the pause carries no more than the whole store would',
  async () => {
    const stateDir = await tempDir('theseus-keyed-slide-');
    const window = 5000;
    const kernel = await Kernel.start({ ...release('0.1.0'), stateDir, precopy: { maxRounds: 3 }, onLog: logCollector().onLog });
    try {
      const store = kernel.client<HostileApi>('hostile');
      await store.slide(window, window);
      await kernel.checkpoint(['hostile'], { fresh: true });
      const wholeBytes = (await readCheckpoint(stateDir, 'hostile'))!.snapshot.bytes.byteLength;
      let running = true;
      let calls = 0;
      const writer = (async () => {
        while (running) {
          await store.slide(2048, window);
          calls++;
        }
      })();
      try {
        await waitUntil('the writer to slide', () => calls >= 5);
        const report = await kernel.upgrade(release('0.2.0'));
        assert.equal(report.outcome, 'switched');
        const [service] = report.services;
        const inPause = service!.stateBytes - (service!.precopy?.bytes ?? 0);
        // Keys grow a little longer as they slide, hence the margin.
        assert.ok(inPause <= 1.5 * wholeBytes, `the pause carried ${inPause} bytes; the whole store is ${wholeBytes} (pre-copy ${JSON.stringify(service!.precopy)})`);
      } finally {
        running = false;
        await writer;
      }
      assert.equal(await store.size(), window);
    } finally {
      await kernel.stop();
    }
  },
);

test(
  'checkpoints every N changes go on after a pre-copy that skipped one and then rolled back',
  async () => {
    const stateDir = await tempDir('theseus-keyed-every-');
    const kernel = await Kernel.start({ ...release('0.1.0'), stateDir, checkpointEveryChanges: 10, checkpointIntervalMs: 3_600_000, onLog: logCollector().onLog });
    try {
      const store = kernel.client<HostileApi>('hostile');
      const gate = gateAt(stateDir, 'every');
      await store.put('gate', { gate: gate.path });
      // Right behind the gate: once it opens, the new worker fails on it and the swap rolls back.
      await store.put('p', { poison: 'throw' });
      await kernel.checkpoint(['hostile'], { fresh: true });
      const swap = kernel.upgrade(release('0.2.0'));
      swap.catch(() => undefined);
      await gate.entered();
      for (let i = 0; i < 12; i++) await store.put(`during-${i}`, { n: i });
      gate.open();
      assert.equal((await swapFailure(swap)).code, 'E_ENTRY_MIGRATION_FAILED');
      for (let i = 0; i < 20; i++) await store.put(`after-${i}`, { n: i });
      // 32 changes since the last checkpoint, with one due every 10: one must reach the disk.
      await waitUntil(
        'a checkpoint after the roll-back',
        async () => {
          const checkpoint = await readCheckpoint(stateDir, 'hostile');
          const whole = checkpoint && (decodeState(checkpoint.snapshot.bytes) as { entries: Map<Key, unknown> });
          return whole ? whole.entries.has('during-11') : false;
        },
        { timeoutMs: 10_000 },
      );
    } finally {
      await kernel.stop();
    }
  },
);
