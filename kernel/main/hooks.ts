// Release hooks: shell commands run at fixed points (pre/post start, stop, upgrade), in the deploy
// root, one after another. A failing pre-hook stops the operation; a failing post-hook is logged.

import { spawn } from 'node:child_process';
import { theseusError } from '../common/errors.ts';
import type { Hooks } from '../release/manifest.ts';

const HOOK_TIMEOUT_MS = 60_000;

export async function runHooks(name: keyof Hooks, commands: readonly string[], root: string, env: Record<string, string>): Promise<void> {
  for (const command of commands) {
    await new Promise<void>((resolve, reject) => {
      const child = spawn('/bin/sh', ['-c', command], { cwd: root, env: { ...process.env, THESEUS_ROOT: root, THESEUS_HOOK: name, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
      let output = '';
      child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
      const timer = setTimeout(() => child.kill('SIGKILL'), HOOK_TIMEOUT_MS);
      child.once('error', (error) => {
        clearTimeout(timer);
        reject(theseusError('E_HOOK_FAILED', name, command, error.message));
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        if (code === 0) resolve();
        else reject(theseusError('E_HOOK_FAILED', name, command, `${signal ? `killed by ${signal}` : `exit code ${code}`}${output.trim() ? `: ${output.trim().split('\n').slice(-3).join(' | ')}` : ''}`));
      });
    });
  }
}
