// Two services where one calls the other inside its handlers. The ports a service holds to call
// others move with it on a swap, and calls between the two never pass through the main thread.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Kernel } from '../../kernel/index.ts';
import { fixture, logCollector } from '../helpers.ts';

interface GatewayApi {
  bump(times: number): Promise<number>;
  bumpAndSignal(times: number, signal: Int32Array): Promise<number>;
  forwarded(): Promise<number>;
}
interface CounterApi {
  add(n: number): Promise<number>;
  get(): Promise<number>;
}

const release = (version: string, gateway: 'v1' | 'v2' | null, counter: 'v1' | 'v2' | null) => ({
  release: version,
  services: {
    ...(gateway ? { gateway: { entry: fixture(`gateway-${gateway}`) } } : {}),
    ...(counter ? { counter: { entry: fixture(`counter-${counter}`) } } : {}),
  },
});

async function startPair(): Promise<Kernel> {
  return Kernel.start({ ...release('1.0.0', 'v1', 'v1'), onLog: logCollector().onLog });
}

test('calls between services go over a direct port: they complete while the main thread is blocked', async () => {
  const kernel = await startPair();
  try {
    const gateway = kernel.client<GatewayApi>('gateway');
    const signal = new Int32Array(new SharedArrayBuffer(4));
    const reply = gateway.bumpAndSignal(200, signal);
    // Block the main thread until the gateway has made 200 calls to the counter. Were those calls
    // relayed through this thread, they could not progress and the wait would time out.
    const outcome = Atomics.wait(signal, 0, 0, 30_000);
    assert.notEqual(outcome, 'timed-out', 'service-to-service calls needed the main thread');
    assert.equal(await reply, 200);
    assert.equal(await kernel.client<CounterApi>('counter').get(), 200);
  } finally {
    await kernel.stop();
  }
});

for (const scenario of [
  // Up to 1.1.0 and back down to 1.0.0; the counter's v2 changes its state vsn, so going back
  // runs its down migration.
  { name: 'the caller alone', steps: [release('1.1.0', 'v2', null), release('1.0.0', 'v1', null)] },
  { name: 'the callee alone', steps: [release('1.1.0', null, 'v2'), release('1.0.0', null, 'v1')] },
  { name: 'both together', steps: [release('1.1.0', 'v2', 'v2'), release('1.0.0', 'v1', 'v1')] },
]) {
  test(`swapping ${scenario.name} under load loses no call between the services`, async () => {
    const kernel = await startPair();
    try {
      // 40 concurrent callers, each asking the gateway to make 5 counter calls per request, and 10
      // more calling the counter directly.
      const failures: unknown[] = [];
      const repliesPerCaller: number[][] = [];
      let stop = false;
      let gatewayRequests = 0;
      let directAdds = 0;
      const loops = [
        ...Array.from({ length: 40 }, (_, i) => {
          const gateway = kernel.client<GatewayApi>('gateway', { dedicated: i % 4 === 0 });
          const replies: number[] = [];
          repliesPerCaller.push(replies);
          return (async () => {
            while (!stop) {
              gatewayRequests++;
              await gateway.bump(5).then(
                (value) => replies.push(value),
                (error: unknown) => {
                  failures.push(error);
                  stop = true;
                },
              );
            }
          })();
        }),
        ...Array.from({ length: 10 }, () => {
          const counter = kernel.client<CounterApi>('counter', { dedicated: true });
          return (async () => {
            while (!stop) {
              directAdds++;
              await counter.add(1).catch((error: unknown) => {
                failures.push(error);
                stop = true;
              });
            }
          })();
        }),
      ];
      await new Promise((resolve) => setTimeout(resolve, 100));
      try {
        for (let round = 0; round < 3; round++) {
          for (const step of scenario.steps) {
            const report = await kernel.upgrade(step);
            assert.equal(report.outcome, 'switched');
            await new Promise((resolve) => setTimeout(resolve, 50));
          }
        }
      } finally {
        stop = true;
        await Promise.all(loops);
      }

      assert.deepEqual(failures, []);
      const counter = kernel.client<CounterApi>('counter');
      const gateway = kernel.client<GatewayApi>('gateway');
      // Every add happened exactly once: 5 per gateway request plus the direct ones.
      assert.equal(await counter.get(), gatewayRequests * 5 + directAdds);
      assert.equal(await gateway.forwarded(), gatewayRequests * 5);
      // Each caller's view of the counter only ever grows.
      for (const replies of repliesPerCaller) {
        for (let i = 1; i < replies.length; i++) assert.ok(replies[i]! > replies[i - 1]!, 'a caller saw the counter go back');
      }
      assert.ok(gatewayRequests > 50, `expected real load, got ${gatewayRequests} gateway requests`);
      assert.equal(kernel.threadIds.length, 2);
      assert.equal(kernel.strayReplies, 0);
    } finally {
      await kernel.stop();
    }
  });
}

test('a release whose new code uses a service the old code did not gets a port to it', async () => {
  const kernel = await Kernel.start({
    release: '1.0.0',
    services: { gateway: { entry: fixture('gateway-v0') }, counter: { entry: fixture('counter-v1') } },
    onLog: logCollector().onLog,
  });
  try {
    const gateway = kernel.client<GatewayApi>('gateway');
    assert.equal(await gateway.forwarded(), 0);
    await kernel.upgrade(release('1.1.0', 'v1', null));
    assert.equal(await gateway.bump(3), 3);
    assert.equal(await kernel.client<CounterApi>('counter').get(), 3);
    assert.equal(await gateway.forwarded(), 3);
  } finally {
    await kernel.stop();
  }
});
