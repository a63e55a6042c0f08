// A deploy root's own bin/kernel, run to completion, for the benches; throws with its output when it fails.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

export function kernelCli(deploy: string, args: string[]): string {
  const result = spawnSync(join(deploy, 'bin', 'kernel'), args, { cwd: deploy, encoding: 'utf8', timeout: 120_000 });
  if (result.status !== 0) throw new Error(`bin/kernel ${args.join(' ')} exited with ${result.status}: ${result.stderr}${result.stdout}`);
  return result.stdout;
}
