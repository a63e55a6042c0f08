// Booting a release's services: bundle (or verify) each one's code, start a worker (or warm a
// pool) for it, wire a channel for every "A uses B", and start each from its checkpoint (migrated
// to its code's vsn) or from init(). What boots is registered as it boots, so a failure part-way
// still lets the kernel's stop end every thread that started. Runs in the kernel's main thread.

import { TheseusError, theseusError } from '../common/errors.ts';
import { sameDescriptor } from '../common/protocol.ts';
import type { Checkpointer } from './checkpointer.ts';
import type { KernelContext } from './kernel-context.ts';
import { PoolHost, type PoolOptions } from './pool-host.ts';
import { ServiceHost } from './service-host.ts';
import type { Supervisor } from './supervisor.ts';
import { wireRelease } from './wiring.ts';

export interface BootParts {
  context: KernelContext;
  hosts: Map<string, ServiceHost>;
  pools: Map<string, PoolHost>;
  supervisor: Supervisor;
  checkpoints: Checkpointer;
  poolOptions(service: string): Promise<PoolOptions>;
}

export async function bootRelease({ context, hosts, pools, supervisor, checkpoints, poolOptions }: BootParts): Promise<void> {
  const { services, release, stateDir, controlTimeoutMs, initTimeoutMs } = context.options;
  const names = Object.keys(services);
  if (names.length === 0) throw theseusError('E_BAD_OPTIONS', 'kernel options', 'no services given');
  const replyDurable = names.find((name) => services[name]!.durability === 'reply');
  if (replyDurable && !stateDir) {
    throw theseusError('E_BAD_OPTIONS', `service '${replyDurable}'`, "durability 'reply' writes the state to disk before each reply, so the kernel needs a stateDir");
  }
  await checkpoints.removeTemporaryFiles();
  const loaded = await Promise.allSettled(
    names.map(async (name) => {
      const source = services[name]!;
      const bundle = await context.bundle(source, name);
      if (source.pool) {
        const pool = await PoolHost.start(await poolOptions(name), release, bundle, source);
        // Registered before it is checked, so a refusal below still ends its threads (stop()).
        pools.set(name, pool);
        if (source.descriptor && !sameDescriptor(source.descriptor, pool.descriptor)) {
          throw theseusError('E_DESCRIPTOR_MISMATCH', name, release, JSON.stringify(pool.descriptor), JSON.stringify(source.descriptor));
        }
        return;
      }
      const worker = await context.loadWorker(name, release, bundle, source);
      if (source.descriptor && !sameDescriptor(source.descriptor, worker.descriptor)) {
        await worker.terminate();
        throw theseusError('E_DESCRIPTOR_MISMATCH', name, release, JSON.stringify(worker.descriptor), JSON.stringify(source.descriptor));
      }
      const host = new ServiceHost(name, worker, source, bundle, controlTimeoutMs);
      supervisor.watch(host, worker);
      hosts.set(name, host);
    }),
  );
  const failed = loaded.find((result): result is PromiseRejectedResult => result.status === 'rejected');
  if (failed) throw failed.reason;
  // A pool's threads call the stateful services it uses through the main thread; not another pool.
  for (const pool of pools.values()) {
    const pooled = pool.descriptor.uses.filter((dependency) => pools.has(dependency));
    if (pooled.length > 0) throw theseusError('E_POOLED_USES', pool.name, pooled.join(', '));
    if (pool.descriptor.keyed) throw theseusError('E_POOLED_KEYED', pool.name);
    const unknown = pool.descriptor.uses.find((dependency) => !hosts.has(dependency));
    if (unknown) throw theseusError('E_UNKNOWN_DEPENDENCY', pool.name, unknown);
  }

  const portSets = wireRelease(hosts, pools);
  await Promise.all(
    [...hosts.values()].map(async (host) => {
      const ports = portSets.get(host.name)!;
      ports.inbound.push(...host.takeInitialCallers());
      const restored = await checkpoints.restored(host);
      if (restored) {
        host.lastSnapshot = { snapshot: { vsn: restored.vsn, bytes: restored.bytes.slice() }, release: host.release, at: new Date().toISOString() };
        // Resume from the checkpoint instead of init(): adopt it (migrating up if it is older), then serve.
        await host.current.request('migrate', { snapshot: restored }, controlTimeoutMs, [restored.bytes.buffer as ArrayBuffer]);
        await host.current.request('switch', { ports }, controlTimeoutMs);
      } else {
        await host.current.request('start', { ports }, initTimeoutMs).catch((error: unknown) => {
          if (error instanceof TheseusError && error.code === 'E_CONTROL_TIMEOUT') throw theseusError('E_INIT_TIMEOUT', host.name, release, initTimeoutMs);
          throw error;
        });
      }
      host.transition('running');
      for (const link of host.takeInitialCallers()) host.attachCaller(link);
    }),
  );
}
