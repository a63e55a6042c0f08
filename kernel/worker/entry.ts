// The first code a service worker runs. Loads the service's bundle, reports what it declares, and
// then dispatches the kernel's control requests to the ServiceRuntime.
//
// This file is bundled (with the rest of kernel/worker and kernel/common) into one JS file that
// every service worker starts from; the service's own code is a separate bundle it imports, so
// each release's code lives and dies with its worker's isolate.

import { parentPort, workerData, type TransferListItem } from 'node:worker_threads';
import { serializeError } from '../common/errors.ts';
import { spareExitsIdle } from '../common/faults.ts';
import { postWithPorts } from '../common/ports.ts';
import {
  type PortSet,
  type ControlRequestMessage,
  type ControlResponseMessage,
  type SpareBoot,
  type SpareBootData,
  type WorkerBootData,
  type WorkerNotice,
} from '../common/protocol.ts';
import type { ServiceDefinition } from '../service.ts';
import { loadServiceDefinition } from './load-definition.ts';
import { ServiceRuntime } from './service-runtime.ts';

const kernel = parentPort!;

function notify(notice: WorkerNotice): void {
  kernel.postMessage(notice);
}

/**
 * A fresh worker has its service in workerData. A warm spare was started with none: it has
 * already paid for the thread and this runtime, and waits for the kernel to name its service.
 * From here on both run the same code.
 */
function bootData(): Promise<WorkerBootData> | WorkerBootData {
  const data = workerData as WorkerBootData | SpareBootData;
  if (!('spare' in data)) return data;
  // Test-only (THESEUS_FAULTS=spare-exits-idle): a spare that dies while it waits.
  const dies = spareExitsIdle() ? setTimeout(() => process.exit(7), 20) : null;
  return new Promise((resolve) => {
    kernel.once('message', (message: SpareBoot) => {
      if (dies) clearTimeout(dies);
      resolve(message.boot);
    });
    notify({ kind: 'spare-ready' });
  });
}

const boot = await bootData();

let definition: ServiceDefinition;
try {
  definition = await loadServiceDefinition(boot.moduleUrl, boot.protocol);
} catch (error) {
  notify({ kind: 'load-failed', error: serializeError(error, 'E_BOOT_FAILED') });
  process.exit(1);
}

const runtime = new ServiceRuntime({
  service: boot.service,
  release: boot.release,
  staticDir: boot.staticDir,
  config: boot.config,
  checkpointEveryChanges: boot.checkpointEveryChanges,
  onCheckpointDue: () => notify({ kind: 'checkpoint-due' }),
  durableStateDir: boot.durableStateDir,
  definition,
  emitLog: (record) => notify({ kind: 'log', record }),
});

const dispatch = (message: ControlRequestMessage): unknown => {
  switch (message.op) {
    case 'start':
      return runtime.start(message as ControlRequestMessage<'start'>);
    case 'suspend':
      return runtime.suspend(message as ControlRequestMessage<'suspend'>);
    case 'precopy':
      return runtime.precopy(message as ControlRequestMessage<'precopy'>);
    case 'resume':
      return runtime.resume(message as ControlRequestMessage<'resume'>);
    case 'init':
      return runtime.initOnly(message as ControlRequestMessage<'init'>);
    case 'migrate':
      return runtime.migrate(message as ControlRequestMessage<'migrate'>);
    case 'switch':
      return runtime.switchIn(message as ControlRequestMessage<'switch'>);
    case 'attach':
      return runtime.attach(message as ControlRequestMessage<'attach'>);
    case 'peer':
      return runtime.peer(message as ControlRequestMessage<'peer'>);
    case 'rewire':
      return runtime.rewire(message as ControlRequestMessage<'rewire'>);
    case 'peer-down':
      return runtime.peerDown(message as ControlRequestMessage<'peer-down'>);
    case 'stats':
      return runtime.stats();
    case 'metrics':
      return runtime.metrics();
    case 'health':
      return runtime.health();
    case 'check-args':
      return runtime.checkArgs(message as ControlRequestMessage<'check-args'>);
    case 'checkpoint':
      return runtime.checkpoint();
    case 'convert':
      return runtime.convert(message as ControlRequestMessage<'convert'>);
    case 'stop':
      return runtime.stop(message as ControlRequestMessage<'stop'>);
    default: {
      const unknown: never = message.op;
      throw new Error(`unknown control op ${String(unknown)}`);
    }
  }
};

const send = (message: unknown, transfer: TransferListItem[]) => kernel.postMessage(message, transfer);

kernel.on('message', async (message: ControlRequestMessage) => {
  let ok = true;
  try {
    const value = await dispatch(message);
    const respond = (result: unknown): ControlResponseMessage => ({ kind: 'response', rid: message.rid, ok: true, value: result });
    // Ports and snapshot bytes move to the kernel rather than being copied.
    const result = (value ?? {}) as { ports?: PortSet; snapshot?: { bytes: Uint8Array } };
    const extra: TransferListItem[] = result.snapshot ? [result.snapshot.bytes.buffer as ArrayBuffer] : [];
    if (result.ports) postWithPorts(send, (ports) => respond({ ...result, ports }), result.ports, extra);
    else send(respond(value), extra);
  } catch (error) {
    ok = false;
    send({ kind: 'response', rid: message.rid, ok: false, error: serializeError(error) } satisfies ControlResponseMessage, []);
  }
  if (message.op === 'stop' && ok) {
    // Let the response flush (and what a final snapshot left behind settle: see stop), then end
    // the thread: its ports are closed and its state is gone.
    setTimeout(() => process.exit(0), runtime.exitDelayMs);
  }
});

notify({ kind: 'loaded', descriptor: runtime.descriptor });
