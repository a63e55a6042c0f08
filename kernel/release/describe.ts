// What a bundled service module declares (its vsn, calls, casts, uses, migrations), learned the
// only trustworthy way: by loading it in a worker thread of the service runtime, as the kernel
// would, and reading the descriptor the worker reports before anything is started. Used by
// `kernel release` to write the manifest. Runs in the CLI's process.

import { Worker } from 'node:worker_threads';
import { deserializeError, theseusError } from '../common/errors.ts';
import { PROTOCOL_VERSION, type ServiceDescriptor, type WorkerBootData, type WorkerToKernel } from '../common/protocol.ts';

export interface DescribeOptions {
  service: string;
  release: string;
  /** file: URL of the bundled module. */
  moduleUrl: string;
  /** The bundled worker runtime (kernel/worker/entry.ts). */
  runtimeFile: string;
  timeoutMs: number;
}

/** Loads the module in a throwaway worker and returns what it declares; the worker never starts. */
export function describeBundle(options: DescribeOptions): Promise<ServiceDescriptor> {
  const boot: WorkerBootData = {
    protocol: PROTOCOL_VERSION,
    service: options.service,
    release: options.release,
    moduleUrl: options.moduleUrl,
    staticDir: null,
    config: {},
    checkpointEveryChanges: 0,
    durableStateDir: null,
  };
  // None of the builder's own Node flags (a tsx loader would only slow the module's load).
  const worker = new Worker(options.runtimeFile, { workerData: boot, name: `${options.service}@${options.release} (describe)`, execArgv: [] });
  return new Promise<ServiceDescriptor>((resolve, reject) => {
    const fail = (reason: string) => reject(theseusError('E_BOOT_FAILED', options.service, options.release, reason));
    const timer = setTimeout(() => fail(`its module did not finish loading within ${options.timeoutMs} ms`), options.timeoutMs);
    worker.on('message', (message: WorkerToKernel) => {
      if (message.kind === 'loaded') {
        clearTimeout(timer);
        resolve(message.descriptor);
      } else if (message.kind === 'load-failed') {
        clearTimeout(timer);
        fail(deserializeError(message.error).message);
      }
    });
    worker.once('error', (error) => fail(`uncaught ${error.message}`));
    worker.once('exit', (code) => fail(`the thread exited (code ${code}) before the module loaded`));
  }).finally(() => void worker.terminate());
}
