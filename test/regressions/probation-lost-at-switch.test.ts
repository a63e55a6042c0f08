// Found in review: on a watched upgrade (probation), a new worker that died as it took over (here
// a carried message kills it) was marked failed and its service left for good, while the other
// services stayed on probation forever: a later crash of theirs was held for a revert that nobody
// would run. Now the lost service is held as a probation crash, for the revert, and probation can
// always be ended.

import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { Kernel, SwapError } from '../../kernel/index.ts';
import { fixture, logCollector, waitUntil } from '../helpers.ts';

type CounterApi = { add(n: number): Promise<number>; armCrash(ms: number): Promise<number> };
type BombApi = { slow(): Promise<number>; boom(): Promise<number> };

test('a new worker lost at the switch of a watched upgrade is held for the revert; ending probation restores supervision', async () => {
  const release = (version: string, code: 'a' | 'b', bomb: boolean) => ({
    release: version,
    services: { counter: { entry: fixture(`durable-counter-${code}`) }, bomb: { entry: fixture('switch-bomb'), config: { bomb } } },
  });
  const kernel = await Kernel.start({ ...release('1.0.0', 'a', false), onLog: logCollector().onLog });
  try {
    const counter = kernel.client<CounterApi>('counter');
    const bomb = kernel.client<BombApi>('bomb');
    const slow = bomb.slow();
    // Queued behind 'slow' when the swap suspends the old worker: carried to the new one, it kills it.
    const boom = bomb.boom().catch((error: { code: string }) => error.code);
    // 'slow' must be running when the swap suspends (a fixed sleep let a loaded machine carry it
    // too, so the new worker died only after the swap had finished).
    const running = async () => (await kernel.status()).find((service) => service.name === 'bomb')!.inFlight === 1;
    await waitUntil("'slow' running in the old worker", running, { intervalMs: 5 });
    const error = await kernel.upgrade({ ...release('1.1.0', 'b', true), probation: true }).then(
      () => assert.fail('the swap must fail after its switch'),
      (caught: unknown) => caught,
    );
    assert.ok(error instanceof SwapError);
    assert.equal(error.report.outcome, 'failed-after-switch');
    assert.equal(error.service, 'bomb');
    assert.deepEqual(kernel.probationCrashes().map((crash) => crash.service), ['bomb'], 'held as a probation crash, for the revert');
    await slow;
    assert.equal(await boom, 'E_SERVICE_DOWN');

    // The revert: the lost service goes back to the release it came from.
    await kernel.revertCrashed('bomb', { release: '1.0.0', source: release('1.0.0', 'a', false).services.bomb });
    assert.equal(await bomb.boom(), 0);
    kernel.abandonProbation();
    // Probation is over: a later crash is restarted by supervision, and calls are answered.
    await counter.armCrash(0);
    await sleep(300);
    assert.equal(await counter.add(1), 1);
  } finally {
    await kernel.stop();
  }
});
