// Moving MessagePorts between threads when some of them may have died.
//
// A port whose other end was closed (a caller closed its client, or the thread holding the other
// end exited) becomes detached once its close is processed, and postMessage() throws
// "MessagePort in transfer list is already detached" for the whole message. A swap must not fail
// because one caller went away, so on that error the ports are probed one by one and the dead
// ones dropped. Runs in the kernel's main thread and in workers.

import { debuglog } from 'node:util';
import { MessageChannel, receiveMessageOnPort, type MessagePort, type TransferListItem } from 'node:worker_threads';
import { portsOf, type PortSet } from './protocol.ts';

const debug = debuglog('theseus');

/**
 * Returns a live handle for `port`, or null when it is detached. Probing moves the port through a
 * local channel and reads it straight back, so the returned object replaces the one passed in.
 */
function probe(port: MessagePort): MessagePort | null {
  const { port1, port2 } = new MessageChannel();
  try {
    port1.postMessage(port, [port]);
    return (receiveMessageOnPort(port2)?.message as MessagePort | undefined) ?? null;
  } catch {
    return null;
  } finally {
    port1.close();
    port2.close();
  }
}

/**
 * The same set without its detached ports (live ones come back as new handles). Queued messages
 * keep pointing at their caller; those of a caller that went away stay queued without one, since
 * their effect on the state still counts.
 */
export function pruneDeadPorts(ports: PortSet): PortSet {
  const inbound: PortSet['inbound'] = [];
  const newIndex: number[] = [];
  for (const link of ports.inbound) {
    const live = probe(link.port);
    newIndex.push(live ? inbound.length : -1);
    if (live) inbound.push({ port: live, taken: link.taken });
  }
  const outbound: PortSet['outbound'] = {};
  for (const [name, entry] of Object.entries(ports.outbound)) {
    const live = probe(entry.port);
    if (live) outbound[name] = { ...entry, port: live };
  }
  const pruned: PortSet = { inbound, outbound };
  if (ports.queued) pruned.queued = ports.queued.map(([index, frame]) => [index < 0 ? -1 : newIndex[index]!, frame]);
  return pruned;
}

function isDetachedError(error: unknown): boolean {
  return error instanceof Error && error.name === 'DataCloneError' && /detached/.test(error.message);
}

/**
 * Posts a message that carries a PortSet, transferring its ports. If a port turned out to be dead,
 * retries once without the dead ones. Returns the PortSet that was actually sent.
 */
export function postWithPorts(
  post: (message: unknown, transfer: TransferListItem[]) => void,
  build: (ports: PortSet) => unknown,
  ports: PortSet,
  extraTransfer: TransferListItem[] = [],
): PortSet {
  try {
    post(build(ports), [...portsOf(ports), ...extraTransfer]);
    return ports;
  } catch (error) {
    if (!isDetachedError(error)) throw error;
  }
  const live = pruneDeadPorts(ports);
  debug('dropped %d dead port(s) of %d', portsOf(ports).length - portsOf(live).length, portsOf(ports).length);
  post(build(live), [...portsOf(live), ...extraTransfer]);
  return live;
}
