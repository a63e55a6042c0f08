// Test-only fault injection. `THESEUS_FAULTS=registry-write,unpack-write` makes those operations
// fail as a full disk or a failing device would, so tests can show that nothing is lost when they
// do. A release's bundled kernel is built with the variable replaced by an empty string
// (kernel/release/build.ts), so a deployed kernel can never be made to fail this way.

export type FaultName = 'registry-write' | 'unpack-write';

export function injectFault(name: FaultName): void {
  const active = (process.env.THESEUS_FAULTS ?? '').split(',').map((fault) => fault.trim());
  if (!active.includes(name)) return;
  const error = new Error(`${name}: no space left on device (injected by THESEUS_FAULTS)`) as NodeJS.ErrnoException;
  error.code = 'ENOSPC';
  throw error;
}
