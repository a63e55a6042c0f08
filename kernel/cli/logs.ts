// `kernel logs [-f]`: prints var/log/kernel.log as readable lines, and follows it with -f.
// Works whether or not a kernel is running. Runs in the CLI's process.

import { open, stat } from 'node:fs/promises';
import { varPaths } from '../common/deploy-paths.ts';

function formatLine(line: string): string {
  try {
    const record = JSON.parse(line) as { time?: string; level?: number; service?: string; release?: string; pid?: number; msg?: string; data?: unknown };
    const level = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' }[record.level ?? 30] ?? String(record.level);
    const data = record.data === undefined ? '' : ` ${JSON.stringify(record.data)}`;
    return `${record.time ?? ''} ${level.padEnd(5)} [${record.service ?? '?'}@${record.release ?? '?'} pid ${record.pid ?? '?'}] ${record.msg ?? ''}${data}`;
  } catch {
    return line;
  }
}

export async function showLogs(root: string, options: { follow: boolean; lines: number }): Promise<void> {
  const file = varPaths(root).log;
  const info = await stat(file).catch(() => null);
  if (!info) {
    process.stdout.write(`No log yet at ${file}.\n`);
    if (!options.follow) return;
  }
  let position = 0;
  if (info) {
    const handle = await open(file, 'r');
    const text = (await handle.readFile('utf8')).toString();
    await handle.close();
    const lines = text.split('\n').filter(Boolean);
    // The last `lines` lines; none for 0 (slice(-0) would be all of them).
    for (const line of lines.slice(Math.max(0, lines.length - options.lines))) process.stdout.write(`${formatLine(line)}\n`);
    position = Buffer.byteLength(text);
  }
  if (!options.follow) return;
  let partial = '';
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, 200));
    const now = await stat(file).catch(() => null);
    if (!now || now.size <= position) {
      if (now && now.size < position) position = 0; // rotated or truncated
      continue;
    }
    const handle = await open(file, 'r');
    const buffer = Buffer.alloc(now.size - position);
    await handle.read(buffer, 0, buffer.length, position);
    await handle.close();
    position = now.size;
    const text = partial + buffer.toString('utf8');
    const lines = text.split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines.filter(Boolean)) process.stdout.write(`${formatLine(line)}\n`);
  }
}
