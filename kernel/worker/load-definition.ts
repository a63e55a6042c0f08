// Loading a service module inside a worker thread: the one place that imports a service's bundle
// and checks its default export. Shared by the stateful runtime (entry.ts) and the pool runtime
// (pool-entry.ts), so both refuse the same modules with the same codes.

import { theseusError } from '../common/errors.ts';
import { PROTOCOL_VERSION } from '../common/protocol.ts';
import type { ServiceDefinition } from '../service.ts';
import { validateDefinition } from './definition.ts';

/** Imports the bundle at `moduleUrl` and returns its checked `defineService({...})` export. */
export async function loadServiceDefinition(moduleUrl: string, kernelProtocol: number): Promise<ServiceDefinition> {
  if (kernelProtocol !== PROTOCOL_VERSION) {
    throw theseusError('E_INVALID_SERVICE', moduleUrl, `it was started by a kernel speaking protocol ${kernelProtocol}, this runtime speaks ${PROTOCOL_VERSION}`);
  }
  const module = (await import(moduleUrl)) as { default?: unknown };
  const problem = validateDefinition(module.default);
  if (problem) throw theseusError('E_INVALID_SERVICE', moduleUrl, problem);
  return module.default as ServiceDefinition;
}
