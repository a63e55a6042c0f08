// How the HTTP front door maps a request to a service's handler (a listener's route table), and
// a call's coded error to the status the client sees. Runs in the kernel's main thread.

import type { HttpRoute } from '../release/manifest.ts';

/** Routes of one listener: exact paths first, then `/prefix/*` routes, longest prefix first. */
export class RouteTable {
  readonly #exact = new Map<string, Map<string, HttpRoute>>();
  readonly #prefixes: Array<{ prefix: string; byMethod: Map<string, HttpRoute> }> = [];

  constructor(routes: readonly HttpRoute[]) {
    for (const route of routes) {
      let byMethod: Map<string, HttpRoute>;
      if (route.path.endsWith('/*')) {
        const prefix = route.path.slice(0, -1);
        let entry = this.#prefixes.find((candidate) => candidate.prefix === prefix);
        if (!entry) this.#prefixes.push((entry = { prefix, byMethod: new Map() }));
        byMethod = entry.byMethod;
      } else {
        byMethod = this.#exact.get(route.path) ?? new Map();
        this.#exact.set(route.path, byMethod);
      }
      byMethod.set(route.method, route);
    }
    this.#prefixes.sort((a, b) => b.prefix.length - a.prefix.length);
  }

  /** The route, or the methods the path does allow (for a 405), or null (a 404). */
  match(method: string, path: string): HttpRoute | string[] | null {
    let byMethod = this.#exact.get(path);
    if (!byMethod) {
      for (const entry of this.#prefixes) {
        if (path.startsWith(entry.prefix)) {
          byMethod = entry.byMethod;
          break;
        }
      }
    }
    if (!byMethod) return null;
    // A GET route answers HEAD too; Node leaves the body out.
    const route = byMethod.get(method) ?? (method === 'HEAD' ? byMethod.get('GET') : undefined);
    if (route) return route;
    const allowed = [...byMethod.keys()];
    if (allowed.includes('GET') && !allowed.includes('HEAD')) allowed.push('HEAD');
    return allowed;
  }

  get descriptions(): string[] {
    const out: string[] = [];
    for (const [path, byMethod] of this.#exact) for (const route of byMethod.values()) out.push(`${route.method} ${path} -> ${route.service}.${route.handler}`);
    for (const { byMethod } of this.#prefixes) for (const route of byMethod.values()) out.push(`${route.method} ${route.path} -> ${route.service}.${route.handler}`);
    return out;
  }
}

/** The HTTP status for a coded error from a call. */
export function statusForError(code: string): number {
  switch (code) {
    case 'E_SERVICE_DOWN':
    case 'E_KERNEL_STOPPED':
      return 503;
    case 'E_UNKNOWN_METHOD':
    case 'E_UNKNOWN_SERVICE':
    case 'E_BAD_HANDLER_RESULT':
    case 'E_REPLY_NOT_CLONEABLE':
    case 'E_HTTP_BAD_REPLY':
      return 502;
    default:
      return 500;
  }
}

/** What the client is told: the status's meaning, never the handler's own message. */
export function publicReason(status: number): string {
  switch (status) {
    case 502:
      return 'the service gave an invalid reply';
    case 503:
      return 'the service is not available; try again';
    case 504:
      return 'the service did not reply in time';
    default:
      return 'the service failed to handle the request';
  }
}
