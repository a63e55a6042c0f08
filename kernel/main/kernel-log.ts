// The kernel's log: structured JSON lines (pino) in var/log/kernel.log, and readable lines on the
// terminal when the kernel runs in one. Every line carries the service, the release and the pid.

import pino from 'pino';
import pretty from 'pino-pretty';
import type { LogRecord } from '../common/protocol.ts';

export interface KernelLog {
  /** A line from a service (or from the kernel itself, as service 'kernel'). */
  write(record: LogRecord): void;
  flush(): void;
}

export function createKernelLog(file: string, options: { terminal: boolean }): KernelLog {
  const streams: pino.StreamEntry[] = [{ level: 'debug', stream: pino.destination({ dest: file, mkdir: true, sync: true }) }];
  if (options.terminal) {
    streams.push({
      level: 'info',
      stream: pretty({ colorize: process.stdout.isTTY, ignore: 'hostname', messageFormat: '[{service}@{release}] {msg}', sync: true }),
    });
  }
  const logger = pino({ level: 'debug', base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, pino.multistream(streams));
  return {
    write(record) {
      const fields: Record<string, unknown> = { service: record.service, release: record.release, time: new Date(record.time).toISOString() };
      if (record.data !== undefined) fields.data = record.data;
      logger[record.level](fields, record.message);
    },
    flush() {
      logger.flush();
    },
  };
}
