// The port wiring of "A uses B", written once: every service that calls another gets a direct
// MessageChannel to it, whose caller end it keeps and whose service end the callee serves. Calls
// between services never pass through the main thread. Used at boot, when a worker is restarted
// (every channel died with it), and when a swap gives new code a service its old code did not use.
// Runs in the kernel's main thread.

import { theseusError } from '../common/errors.ts';
import { createLink, type InboundLink, type MethodTable, type OutboundLink, type PortSet, type ServiceDescriptor } from '../common/protocol.ts';
import type { PoolHost } from './pool-host.ts';
import type { ServiceHost } from './service-host.ts';

/** A service's calls and casts, as a client of it needs them. */
export function methodTable(descriptor: MethodTable): MethodTable {
  return { calls: [...descriptor.calls], casts: [...descriptor.casts] };
}

/** A new channel to `callee`: the caller keeps `caller`, `callee` is to be given `service`. */
export function channelTo(callee: { descriptor: MethodTable }): { caller: OutboundLink; service: InboundLink } {
  return createLink(methodTable(callee.descriptor));
}

/**
 * A new channel to the pooled service `dependency`, when it is one: the caller keeps `caller`, and
 * `attach()` has the pool serve the other end (in the main thread, each call a task on the pool).
 */
export function channelToPool(dependency: string, pools: ReadonlyMap<string, PoolHost>): { caller: OutboundLink; attach(): void } | null {
  const pool = pools.get(dependency);
  if (!pool) return null;
  const { caller, service } = channelTo(pool);
  return { caller, attach: () => pool.serveCaller(service) };
}

/**
 * The channels of a whole release at boot: for every "A uses B", A's PortSet gets the caller end
 * and B's the service end (a pool serves its end itself). Refuses a dependency not in the release.
 */
export function wireRelease(hosts: ReadonlyMap<string, ServiceHost>, pools: ReadonlyMap<string, PoolHost>): Map<string, PortSet> {
  const portSets = new Map<string, PortSet>([...hosts.keys()].map((name) => [name, { inbound: [], outbound: {} }]));
  for (const host of hosts.values()) {
    for (const dependency of host.descriptor.uses) {
      const toPool = channelToPool(dependency, pools);
      if (toPool) {
        portSets.get(host.name)!.outbound[dependency] = toPool.caller;
        toPool.attach();
        continue;
      }
      const callee = hosts.get(dependency);
      if (!callee) throw theseusError('E_UNKNOWN_DEPENDENCY', host.name, dependency);
      const { caller, service } = channelTo(callee);
      portSets.get(host.name)!.outbound[dependency] = caller;
      portSets.get(dependency)!.inbound.push(service);
    }
  }
  return portSets;
}

/**
 * New channels for a worker that replaces a dead one (a restart, or a revert into another
 * release's code), which `descriptor` describes: every channel died with the old worker. The
 * main thread's clients and every running service that uses this one get a new channel to it,
 * and it gets one to each service it uses. `connect()` hands the far ends over once the worker
 * serves; `close()` undoes it all if it never does.
 */
export function rewireReplacement(
  host: ServiceHost,
  descriptor: ServiceDescriptor,
  hosts: ReadonlyMap<string, ServiceHost>,
  rewire: (user: ServiceHost, link: OutboundLink) => void,
  pools: ReadonlyMap<string, PoolHost> = new Map(),
): { ports: PortSet; connect(): void; close(): void } {
  const inbound: InboundLink[] = [];
  const outbound: PortSet['outbound'] = {};
  const connections: Array<() => void> = [];
  for (const client of host.clients) {
    const { caller, service } = channelTo({ descriptor });
    inbound.push(service);
    connections.push(() => client.rebind(caller.port, caller.taken));
  }
  for (const user of hosts.values()) {
    if (user === host || user.state !== 'running' || !user.descriptor.uses.includes(host.name)) continue;
    const { caller, service } = channelTo({ descriptor });
    inbound.push(service);
    connections.push(() => rewire(user, caller));
  }
  for (const dependency of descriptor.uses) {
    const toPool = channelToPool(dependency, pools);
    if (toPool) {
      outbound[dependency] = toPool.caller;
      connections.push(toPool.attach);
      continue;
    }
    const callee = hosts.get(dependency);
    if (!callee) continue;
    const { caller, service } = channelTo(callee);
    outbound[dependency] = caller;
    connections.push(() => callee.attachCaller(service));
  }
  return {
    ports: { inbound, outbound },
    connect: () => {
      for (const connection of connections) connection();
    },
    close: () => {
      for (const link of inbound) link.port.close();
      for (const link of Object.values(outbound)) link.port.close();
    },
  };
}

/**
 * A swapped-in worker whose new code uses services its old code did not: a channel to each is
 * added to `ports`; the returned steps give the callees their ends (a pool serves its own), once
 * the switch is sent.
 */
export function addNewDependencies(ports: PortSet, descriptor: ServiceDescriptor, hosts: ReadonlyMap<string, ServiceHost>, pools: ReadonlyMap<string, PoolHost>): Array<() => void> {
  const attach: Array<() => void> = [];
  for (const dependency of descriptor.uses) {
    if (ports.outbound[dependency]) continue;
    const toPool = channelToPool(dependency, pools);
    if (toPool) {
      ports.outbound[dependency] = toPool.caller;
      attach.push(toPool.attach);
      continue;
    }
    const callee = hosts.get(dependency)!;
    const { caller, service } = channelTo(callee);
    ports.outbound[dependency] = caller;
    attach.push(() => callee.attachCaller(service));
  }
  return attach;
}
