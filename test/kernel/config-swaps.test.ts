// A release that changes only its runtimeConfig (same code) is still a change: the kernel swaps
// it in like any other, and the services see the new ctx.config from the first call after the
// switch; a downgrade brings the old config back. The state comes along, as in any swap.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Kernel, SwapError } from '../../kernel/index.ts';
import { fixture, logCollector } from '../helpers.ts';

type Greeting = { greeting: string | null; release: string; calls?: number };
type GreeterApi = { greet(): Promise<Greeting> };

const release = (version: string, greeting: string) => ({
  release: version,
  services: {
    greeter: { entry: fixture('configured'), config: { greeting } },
    pooledGreeter: { entry: fixture('configured-pooled'), config: { greeting }, pool: { size: 2 } },
  },
});

test('a config-only release is swapped in: each call after the switch sees the new ctx.config, the state carries over, and a downgrade brings the old config back', async () => {
  const kernel = await Kernel.start({ ...release('1.0.0', 'hello'), onLog: logCollector().onLog });
  try {
    const greeter = kernel.client<GreeterApi>('greeter');
    const pooled = kernel.client<GreeterApi>('pooledGreeter');
    assert.deepEqual(await greeter.greet(), { greeting: 'hello', release: '1.0.0', calls: 1 });

    const up = await kernel.upgrade(release('1.0.1', 'hi'));
    assert.equal(up.outcome, 'switched');
    const byService = Object.fromEntries(up.services.map((service) => [service.service, service]));
    assert.deepEqual([byService.greeter!.change, byService.greeter!.outcome, byService.greeter!.migration], ['config', 'switched', 'none']);
    assert.deepEqual([byService.pooledGreeter!.change, byService.pooledGreeter!.outcome], ['config', 'switched']);
    // The very first call after the switch, and the state came along (2nd call).
    assert.deepEqual(await greeter.greet(), { greeting: 'hi', release: '1.0.1', calls: 2 });
    assert.deepEqual(await pooled.greet(), { greeting: 'hi', release: '1.0.1' });

    const down = await kernel.downgrade(release('1.0.0', 'hello'));
    assert.equal(down.services.find((service) => service.service === 'greeter')!.change, 'config');
    assert.deepEqual(await greeter.greet(), { greeting: 'hello', release: '1.0.0', calls: 3 });
    assert.deepEqual(await pooled.greet(), { greeting: 'hello', release: '1.0.0' });

    // The same code and the same config again: nothing to do, and it says so.
    const same = await kernel.upgrade(release('1.0.2', 'hello')).then(
      () => assert.fail('nothing changed, so nothing should be swapped'),
      (error: unknown) => error,
    );
    assert.ok(same instanceof SwapError);
    assert.equal(same.code, 'E_SWAP_NOTHING_TO_DO');
  } finally {
    await kernel.stop();
  }
});
