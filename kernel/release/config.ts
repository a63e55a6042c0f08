// The release configuration (`theseus.config.ts`), as `mix release.init` writes rel/config.exs.
// Read by `kernel release` in the CLI's process; its values end up in the release manifest.

import { createHash, randomBytes } from 'node:crypto';
import { readFile, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import semver from 'semver';
import { errorMessage, theseusError } from '../common/errors.ts';
import { DurabilitySchema, HttpRouteSchema, PoolSchema, WebSocketLimitsSchema, WebSocketRouteSchema, type AdminConfig, type Hooks, type HttpConfig, type HttpRoute, type PoolConfig, type WebSocketRoute } from './manifest.ts';
import { normalizeAdmin } from './admin-config.ts';
import type { Durability } from '../common/protocol.ts';

const HookList = Type.Array(Type.String({ minLength: 1 }));
/** Each spare is an idle thread of about 10 MB: more than a few would only cost memory. */
const MAX_SPARE_WORKERS = 16;

export const ReleaseConfigSchema = Type.Object(
  {
    app: Type.String({ pattern: '^[A-Za-z][A-Za-z0-9_-]{0,63}$' }),
    services: Type.Record(
      Type.String({ pattern: '^[A-Za-z][A-Za-z0-9_-]{0,63}$' }),
      Type.Object(
        {
          entry: Type.String({ minLength: 1 }),
          /** Declares the service stateless, run on a pool of this many worker threads. */
          pool: Type.Optional(PoolSchema),
          /** What a kill -9 can lose: 'reply' (nothing a caller was told) or 'periodic' (the checkpoint settings below). */
          durability: Type.Optional(DurabilitySchema),
        },
        { additionalProperties: false },
      ),
      // A bare Record accepts any key that breaks its pattern: a service named '../x' would be
      // bundled to services/../x/.
      { minProperties: 1, additionalProperties: false },
    ),
    drainTimeoutMs: Type.Optional(Type.Integer({ minimum: 1 })),
    probationMs: Type.Optional(Type.Integer({ minimum: 0 })),
    checkpointIntervalMs: Type.Optional(Type.Integer({ minimum: 0 })),
    checkpointEveryChanges: Type.Optional(Type.Integer({ minimum: 0 })),
    /** When a swap's pre-copy of a keyed store stops (see KernelOptions.precopy). */
    precopy: Type.Optional(
      Type.Object(
        {
          maxRounds: Type.Optional(Type.Integer({ minimum: 0, maximum: 1000 })),
          stopAtKeys: Type.Optional(Type.Integer({ minimum: 0 })),
        },
        { additionalProperties: false },
      ),
    ),
    maxRestarts: Type.Optional(Type.Integer({ minimum: 0 })),
    restartWindowMs: Type.Optional(Type.Integer({ minimum: 1 })),
    spareWorkers: Type.Optional(Type.Integer({ minimum: 0, maximum: MAX_SPARE_WORKERS })),
    node: Type.Optional(Type.String()),
    hooks: Type.Optional(
      Type.Object(
        {
          preStart: Type.Optional(HookList),
          postStart: Type.Optional(HookList),
          preStop: Type.Optional(HookList),
          postStop: Type.Optional(HookList),
          preUpgrade: Type.Optional(HookList),
          postUpgrade: Type.Optional(HookList),
        },
        { additionalProperties: false },
      ),
    ),
    runtimeConfig: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
    /** Where /metrics and the dashboard listen (see AdminSchema), or false. */
    admin: Type.Optional(
      Type.Union([
        Type.Literal(false),
        Type.Object({ host: Type.Optional(Type.Unknown()), port: Type.Optional(Type.Unknown()) }, { additionalProperties: false }),
      ]),
    ),
    http: Type.Optional(
      Type.Object(
        {
          listeners: Type.Array(
            Type.Object(
              {
                port: Type.Integer({ minimum: 0, maximum: 65535 }),
                host: Type.Optional(Type.String({ minLength: 1 })),
                routes: Type.Optional(Type.Array(HttpRouteSchema)),
                websockets: Type.Optional(Type.Array(WebSocketRouteSchema)),
              },
              { additionalProperties: false },
            ),
            { minItems: 1 },
          ),
          maxBodyBytes: Type.Optional(Type.Integer({ minimum: 0 })),
          maxReplyBytes: Type.Optional(Type.Integer({ minimum: 0 })),
          requestTimeoutMs: Type.Optional(Type.Integer({ minimum: 1 })),
          websocket: Type.Optional(WebSocketLimitsSchema),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);

export type ReleaseConfig = Static<typeof ReleaseConfigSchema>;

/** Typed helper for `theseus.config.ts`: `export default defineRelease({ ... })`. */
export function defineRelease(config: ReleaseConfig): ReleaseConfig {
  return config;
}

// Defined with the deploy root's paths, so the CLI names it without loading this module.
export { DEFAULT_CONFIG_FILE } from '../common/deploy-paths.ts';
export const DEFAULT_DRAIN_TIMEOUT_MS = 5000;
export const DEFAULT_SPARE_WORKERS = 1;
export const DEFAULT_NODE_RANGE = '>=20.6';
export const DEFAULT_PROBATION_MS = 2000;
export const DEFAULT_HTTP_HOST = '127.0.0.1';
export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;
export const DEFAULT_MAX_REPLY_BYTES = 16 * 1024 * 1024;
export const DEFAULT_HTTP_TIMEOUT_MS = 30_000;

export interface LoadedConfig {
  file: string;
  /** The folder the config's paths are relative to. */
  dir: string;
  app: string;
  /** From the nearest package.json, as the seed's version comes from mix.exs. */
  version: string;
  packageFile: string;
  services: Array<{ name: string; entry: string; pool: PoolConfig | null; durability: Durability }>;
  drainTimeoutMs: number;
  probationMs: number;
  checkpointIntervalMs: number;
  checkpointEveryChanges: number;
  precopy: { maxRounds?: number; stopAtKeys?: number } | null;
  maxRestarts: number;
  restartWindowMs: number;
  spareWorkers: number;
  node: string;
  hooks: Hooks;
  runtimeConfig: Record<string, unknown>;
  /** The HTTP front door, with defaults filled in; null when the release declares none. */
  http: HttpConfig | null;
  /** The admin listener as declared (checked); null when the config leaves it to the default. */
  admin: AdminConfig | null;
}

/**
 * Under a TypeScript loader (tsx, as in the repo) Node imports the .ts file itself. The installed
 * package runs compiled JavaScript with no loader, so there esbuild compiles the file into a module
 * written next to it, where its relative paths and its packages ('theseus/release') resolve as
 * they do from the source; it is imported once and removed. The same happens where Node strips
 * types itself but refuses syntax that needs a compiler (an enum).
 */
const NEEDS_COMPILING = new Set(['ERR_UNKNOWN_FILE_EXTENSION', 'ERR_UNSUPPORTED_TYPESCRIPT_SYNTAX']);

async function importConfigModule(absolute: string, version: string): Promise<{ default?: unknown }> {
  try {
    return (await import(`${pathToFileURL(absolute).href}?contents=${version}`)) as { default?: unknown };
  } catch (error) {
    if (!NEEDS_COMPILING.has(String((error as { code?: unknown }).code))) throw error;
  }
  const { build } = await import('esbuild');
  const result = await build({ entryPoints: [absolute], bundle: true, packages: 'external', platform: 'node', format: 'esm', target: 'node20', write: false, logLevel: 'silent' });
  const compiled = join(dirname(absolute), `.${basename(absolute)}-${process.pid}-${randomBytes(4).toString('hex')}.mjs`);
  await writeFile(compiled, result.outputFiles![0]!.contents);
  try {
    return (await import(pathToFileURL(compiled).href)) as { default?: unknown };
  } finally {
    await rm(compiled, { force: true });
  }
}

export async function loadReleaseConfig(file: string): Promise<LoadedConfig> {
  const absolute = resolve(file);
  if (!(await stat(absolute).catch(() => null))) throw theseusError('E_CONFIG_MISSING', absolute);
  let loaded: unknown;
  try {
    // Keyed by the file's contents: a process that builds twice (a test, a bench) must see an
    // edited config, and an ES module is never loaded again from the same URL.
    const version = createHash('sha256').update(await readFile(absolute)).digest('hex').slice(0, 16);
    loaded = (await importConfigModule(absolute, version)).default;
  } catch (error) {
    throw theseusError('E_CONFIG_INVALID', absolute, `it failed to load: ${errorMessage(error)}`);
  }
  if (!Value.Check(ReleaseConfigSchema, loaded)) {
    const problems = [...Value.Errors(ReleaseConfigSchema, loaded)].slice(0, 5).map((e) => `${e.path || '/'} ${e.message}`);
    throw theseusError('E_CONFIG_INVALID', absolute, problems.join('; '));
  }
  const config = loaded;
  const dir = dirname(absolute);
  const { version, packageFile } = await findPackageVersion(dir);
  const node = config.node ?? DEFAULT_NODE_RANGE;
  if (!semver.validRange(node)) throw theseusError('E_CONFIG_INVALID', absolute, `node: '${node}' is not a semver range`);
  const hooks = config.hooks ?? {};
  return {
    file: absolute,
    dir,
    app: config.app,
    version,
    packageFile,
    services: Object.entries(config.services)
      .map(([name, service]) => {
        // A pool keeps no state, so there is nothing for it to make durable.
        if (service.pool && service.durability === 'reply') throw theseusError('E_CONFIG_INVALID', absolute, `services.${name}: a pooled service keeps no state, so durability 'reply' has nothing to write; remove one of the two`);
        return { name, entry: resolve(dir, service.entry), pool: service.pool ?? null, durability: service.durability ?? 'periodic' };
      })
      .sort((a, b) => a.name.localeCompare(b.name)),
    drainTimeoutMs: config.drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS,
    probationMs: config.probationMs ?? DEFAULT_PROBATION_MS,
    checkpointIntervalMs: config.checkpointIntervalMs ?? 1000,
    checkpointEveryChanges: config.checkpointEveryChanges ?? 1000,
    precopy: config.precopy ?? null,
    maxRestarts: config.maxRestarts ?? 3,
    restartWindowMs: config.restartWindowMs ?? 5000,
    spareWorkers: config.spareWorkers ?? DEFAULT_SPARE_WORKERS,
    node,
    hooks: {
      preStart: hooks.preStart ?? [],
      postStart: hooks.postStart ?? [],
      preStop: hooks.preStop ?? [],
      postStop: hooks.postStop ?? [],
      preUpgrade: hooks.preUpgrade ?? [],
      postUpgrade: hooks.postUpgrade ?? [],
    },
    runtimeConfig: config.runtimeConfig ?? {},
    http: config.http ? normalizeHttp(config.http, absolute, Object.keys(config.services), Object.keys(config.services).filter((name) => config.services[name]!.pool)) : null,
    admin: config.admin === undefined ? null : normalizeAdmin(config.admin, absolute),
  };
}

function normalizeHttp(http: NonNullable<ReleaseConfig['http']>, file: string, services: string[], pooled: string[] = []): HttpConfig {
  const listeners = http.listeners.map((listener) => ({
    port: listener.port,
    host: listener.host ?? DEFAULT_HTTP_HOST,
    routes: listener.routes ?? [],
    // Only when declared, so a release without WebSockets has the manifest it had before.
    ...(listener.websockets ? { websockets: listener.websockets } : {}),
  }));
  const seen = new Set<string>();
  for (const [index, listener] of listeners.entries()) {
    const key = `${listener.host}:${listener.port}`;
    // Two listeners on port 0 would be one to the kernel, which tells listeners apart by host and port.
    if (seen.has(key)) throw theseusError('E_CONFIG_INVALID', file, `http.listeners[${index}]: ${key} is declared twice; put its routes in one listener`);
    seen.add(key);
    if (listener.routes.length === 0 && (listener.websockets ?? []).length === 0) {
      throw theseusError('E_CONFIG_INVALID', file, `http.listeners[${index}] (${key}) has no routes and no websockets; give it at least one, or remove it`);
    }
    checkWebSocketRoutes(listener.websockets ?? [], listener.routes, key, file, services, pooled);
    const routes = new Set<string>();
    for (const route of listener.routes) {
      if (!services.includes(route.service)) {
        throw theseusError('E_CONFIG_INVALID', file, `the route ${route.method} ${route.path} goes to service '${route.service}', which is not in services (${services.join(', ')})`);
      }
      const routeKey = `${route.method} ${route.path}`;
      if (routes.has(routeKey)) throw theseusError('E_CONFIG_INVALID', file, `the route ${routeKey} is declared twice on ${key}`);
      routes.add(routeKey);
    }
  }
  return {
    listeners,
    maxBodyBytes: http.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES,
    maxReplyBytes: http.maxReplyBytes ?? DEFAULT_MAX_REPLY_BYTES,
    requestTimeoutMs: http.requestTimeoutMs ?? DEFAULT_HTTP_TIMEOUT_MS,
    ...(http.websocket ? { websocket: http.websocket } : {}),
  };
}

/** A WebSocket route must go to a stateful service of the release, on a path no other route of its listener takes. */
function checkWebSocketRoutes(websockets: readonly WebSocketRoute[], routes: readonly HttpRoute[], key: string, file: string, services: string[], pooled: string[]): void {
  const paths = new Set<string>();
  for (const route of websockets) {
    if (!services.includes(route.service)) {
      throw theseusError('E_CONFIG_INVALID', file, `the WebSocket route ${route.path} goes to service '${route.service}', which is not in services (${services.join(', ')})`);
    }
    if (pooled.includes(route.service)) throw theseusError('E_CONFIG_INVALID', file, `the WebSocket route ${route.path} goes to '${route.service}', a pooled service, which cannot remember a connection; route it to a stateful service`);
    if (paths.has(route.path)) throw theseusError('E_CONFIG_INVALID', file, `the WebSocket route ${route.path} is declared twice on ${key}`);
    if (routes.some((other) => other.path === route.path)) throw theseusError('E_CONFIG_INVALID', file, `${route.path} on ${key} is both an HTTP route and a WebSocket route; give the WebSocket its own path`);
    paths.add(route.path);
  }
}

async function findPackageVersion(from: string): Promise<{ version: string; packageFile: string }> {
  for (let dir = from; ; dir = dirname(dir)) {
    const packageFile = resolve(dir, 'package.json');
    const text = await readFile(packageFile, 'utf8').catch(() => null);
    if (text !== null) {
      const version = (JSON.parse(text) as { version?: unknown }).version;
      if (typeof version !== 'string' || !semver.valid(version)) {
        throw theseusError('E_CONFIG_INVALID', packageFile, `"version" must be a semantic version like 0.1.0 (got ${JSON.stringify(version)})`);
      }
      return { version, packageFile };
    }
    if (dirname(dir) === dir) throw theseusError('E_CONFIG_INVALID', from, 'no package.json above it to take the release version from');
  }
}
