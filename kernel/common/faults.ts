// Test-only fault injection. `THESEUS_FAULTS=registry-write,unpack-write,state-write` makes those operations
// fail as a full disk or a failing device would, so tests can show that nothing is lost when they
// do; `unpack-write-after:<bytes>` makes them fail part-way (injectFaultAfterBytes). A release's
// bundled kernel is built with the variable replaced by an empty string (kernel/release/build.ts),
// so a deployed kernel can never be made to fail this way.

import { rmSync } from 'node:fs';

export type FaultName = 'registry-write' | 'unpack-write' | 'state-write';

function activeFaults(): string[] {
  return (process.env.THESEUS_FAULTS ?? '').split(',').map((fault) => fault.trim());
}

export function injectFault(name: FaultName): void {
  if (activeFaults().includes(name)) throw noSpaceLeft(name, '');
}

/**
 * `<name>-after:<bytes>` (e.g. `unpack-write-after:4096`) fails the operation part-way, once it has
 * written at least that many bytes, so a test can check what is cleaned up after a partial write.
 * The writer calls this with its running count as it goes.
 */
export function injectFaultAfterBytes(name: FaultName, bytesWritten: number): void {
  const prefix = `${name}-after:`;
  for (const fault of activeFaults()) {
    if (fault.startsWith(prefix) && bytesWritten >= Number(fault.slice(prefix.length))) throw noSpaceLeft(name, ` after ${bytesWritten} bytes`);
  }
}

/** Whether `<name>-after:<bytes>` is set: callers that count bytes only for it skip the count otherwise. */
export function faultAfterBytesActive(name: FaultName): boolean {
  return activeFaults().some((fault) => fault.startsWith(`${name}-after:`));
}

function noSpaceLeft(name: FaultName, when: string): NodeJS.ErrnoException {
  const error = new Error(`${name}: no space left on device${when} (injected by THESEUS_FAULTS)`) as NodeJS.ErrnoException;
  error.code = 'ENOSPC';
  return error;
}

/**
 * `spare-exits-idle:<file>` makes one warm spare worker's thread end soon after it said it was
 * ready, as one that crashed while it waited would: the first spare to boot that can remove the
 * file. The others, with the same environment, live on, so the kernel cannot tell the doomed one
 * by its environment.
 */
export function spareExitsIdle(): boolean {
  const prefix = 'spare-exits-idle:';
  const fault = activeFaults().find((name) => name.startsWith(prefix));
  if (!fault) return false;
  try {
    rmSync(fault.slice(prefix.length));
    return true;
  } catch {
    return false;
  }
}

/**
 * `hang-after:<point>` stops the operation for good right after that point, so a test can SIGKILL
 * the kernel exactly at a phase boundary and check what a restart finds.
 */
export async function hangIfFaulted(point: string, log: (message: string) => void): Promise<void> {
  if (!activeFaults().includes(`hang-after:${point}`)) return;
  log(`hanging after ${point} (injected by THESEUS_FAULTS)`);
  await new Promise<never>(() => setInterval(() => undefined, 60_000));
}
