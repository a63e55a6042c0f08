// Reading the body of `POST /increment`, shared by every release of the sequence app.
import type { HttpReply, HttpRequest } from '../../../kernel/service.ts';

/** The integer `delta` of a JSON body like {"delta": 3}, or a 400 reply saying what to send. */
export function readDelta(request: HttpRequest): { delta: number } | { reply: HttpReply } {
  let parsed: unknown;
  try {
    parsed = typeof request.body === 'string' ? JSON.parse(request.body) : null;
  } catch {
    parsed = null;
  }
  const delta = (parsed as { delta?: unknown } | null)?.delta;
  if (typeof delta !== 'number' || !Number.isSafeInteger(delta)) {
    return { reply: { status: 400, body: { error: 'E_BAD_REQUEST', message: 'Send a JSON body like {"delta": 3}, with an integer delta.' } } };
  }
  return { delta };
}
