// The kernel's health, as a load balancer polls it: `GET /_theseus/health` on every HTTP listener
// of the running release, answered by the kernel's main thread itself (no service is involved, so
// a busy or paused service never makes a healthy host look dead). `kernel status --json` carries
// the same report. Runs in the kernel's main thread.
//
//   starting  503  the kernel is booting (listeners open just before it serves)
//   ok        200  the kernel serves
//   draining  503  `kernel stop` (or SIGTERM) has begun: the listeners still answer for the stop
//                  grace, so a balancer polling sees the host go and takes it out before any
//                  connection is refused; then they close, and requests in flight are answered
//
// The grace is THESEUS_STOP_GRACE_MS in the kernel's environment (default 0: a stop closes at
// once, as it always did). Set it above the balancer's poll interval times its failure count.

import { theseusError } from '../common/errors.ts';
import type { HealthReport, HealthStatus } from '../common/status.ts';

/** The path the kernel answers on every HTTP listener; a release route there is never reached. */
export const HEALTH_PATH = '/_theseus/health';
/** The environment variable holding the stop grace, in milliseconds. */
export const STOP_GRACE_ENV = 'THESEUS_STOP_GRACE_MS';
/** A grace longer than this is a typo (and would outlast any service manager's stop timeout). */
const MAX_STOP_GRACE_MS = 10 * 60_000;

/** The stop grace from the environment; a value that is not a whole number of ms refuses to start. */
export function readStopGraceMs(env: NodeJS.ProcessEnv = process.env): number {
  const text = env[STOP_GRACE_ENV];
  if (text === undefined || text.trim() === '') return 0;
  const ms = Number(text);
  if (!Number.isSafeInteger(ms) || ms < 0 || ms > MAX_STOP_GRACE_MS) throw theseusError('E_STOP_GRACE_INVALID', STOP_GRACE_ENV, text, MAX_STOP_GRACE_MS);
  return ms;
}

export class KernelHealth {
  #status: HealthStatus = 'starting';
  #drainingAt = 0;
  readonly #startedAt = Date.now();
  readonly #release: () => string | null;
  readonly stopGraceMs: number;

  constructor(options: { release: () => string | null; stopGraceMs: number }) {
    this.#release = options.release;
    this.stopGraceMs = options.stopGraceMs;
  }

  get status(): HealthStatus {
    return this.#status;
  }

  /** The kernel serves: health answers 200. */
  serving(): void {
    if (this.#status === 'starting') this.#status = 'ok';
  }

  /** A stop began: health answers 503 "draining" from this moment on, for good. */
  draining(): void {
    if (this.#status === 'draining') return;
    this.#status = 'draining';
    this.#drainingAt = Date.now();
  }

  /**
   * Waits out the rest of the stop grace, counted from draining(), when there are listeners a
   * balancer could be polling; requests keep being served meanwhile.
   */
  async graceBeforeClosing(listening: boolean): Promise<void> {
    if (!listening || this.stopGraceMs === 0) return;
    const left = this.#drainingAt + this.stopGraceMs - Date.now();
    if (left > 0) await new Promise((resolve) => setTimeout(resolve, left));
  }

  report(): HealthReport {
    const report: HealthReport = { status: this.#status, release: this.#release(), pid: process.pid, uptimeMs: Date.now() - this.#startedAt, stopGraceMs: this.stopGraceMs };
    if (this.#status === 'draining') report.drainingForMs = Date.now() - this.#drainingAt;
    return report;
  }

  /**
   * The HTTP answer to a request for HEALTH_PATH: 200 while serving, 503 otherwise (with
   * `connection: close`, so a balancer's next poll opens a new connection and meets the closed
   * listener once it is gone). GET and HEAD only.
   */
  answer(method: string): { status: number; headers: string[]; body: string } {
    const json = (status: number, value: unknown, extra: string[] = []) => {
      const body = JSON.stringify(value);
      const headers = ['content-type', 'application/json; charset=utf-8', 'cache-control', 'no-store', 'content-length', String(Buffer.byteLength(body)), ...extra];
      return { status, headers, body };
    };
    if (method !== 'GET' && method !== 'HEAD') {
      const error = theseusError('E_HTTP_METHOD_NOT_ALLOWED', HEALTH_PATH, method, 'GET, HEAD');
      return json(405, { error: error.code, message: error.message }, ['allow', 'GET, HEAD']);
    }
    const report = this.report();
    return report.status === 'ok' ? json(200, report) : json(503, report, ['retry-after', '1', 'connection', 'close']);
  }
}
