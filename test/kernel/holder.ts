// Driving the holder service (test/fixtures/services/holder-common.ts) through a kernel: its
// client, and swap targets that carry their descriptor, so a swap boots only the new worker.

import type { SwapTarget } from '../../kernel/index.ts';
import { describeDefinition } from '../../kernel/worker/definition.ts';
import type { ServiceDefinition } from '../../kernel/service.ts';
import type { PathStep, PoisonKind } from '../fixtures/services/holder-common.ts';
import { fixture } from '../helpers.ts';

export interface HolderApi {
  set(value: unknown): Promise<null>;
  get(): Promise<unknown>;
  poison(value: unknown, path: PathStep[], kind: PoisonKind): Promise<null>;
  code(): Promise<string>;
}

export type HolderVersion = 'holder-v1' | 'holder-v1b' | 'holder-v2' | 'holder-v2-bad-down';

export async function holderTarget(release: string, version: HolderVersion): Promise<SwapTarget> {
  const entry = fixture(version);
  const definition = ((await import(entry)) as { default: ServiceDefinition }).default;
  return { release, services: { holder: { entry, descriptor: describeDefinition(definition) } } };
}

export function holderRelease(release: string, version: HolderVersion) {
  return { release, services: { holder: { entry: fixture(version) } } };
}
