// The release manifest and upgrade plan: their schemas, and the checks that every reader runs.
// Release tooling (build, install) runs in the CLI's process and in the kernel's main thread;
// nothing here runs inside a service worker.
//
// A release directory holds `manifest.json`, `plan.json` and the files the manifest lists with
// their sha256. The manifest is the single source of truth: a file it does not list, or whose
// hash differs, is refused.

import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { theseusError } from '../common/errors.ts';
import { MAX_RELEASE_PATH_LENGTH, RELEASE_PATH_PATTERN, parseUntrustedJson, releasePathProblem } from './release-paths.ts';

export const MANIFEST_SCHEMA_VERSION = 1;

const Sha256 = Type.String({ pattern: '^[0-9a-f]{64}$' });
/** A release version (semver); it names a folder under releases/, so it can hold no slash. */
export const Version = Type.String({ pattern: '^\\d+\\.\\d+\\.\\d+(?:-[0-9A-Za-z.-]+)?(?:\\+[0-9A-Za-z.-]+)?$' });
/**
 * A path inside a release: relative, normalized, forward slashes, no control characters (the
 * rules are in release-paths.ts). The length is in the pattern too: as a record's key schema,
 * only the pattern is checked.
 */
const RelativePath = Type.String({ pattern: `^(?=[\\s\\S]{1,${MAX_RELEASE_PATH_LENGTH}}$)${RELEASE_PATH_PATTERN.slice(1)}`, maxLength: MAX_RELEASE_PATH_LENGTH });
const Name = Type.String({ pattern: '^[A-Za-z][A-Za-z0-9_-]{0,63}$' });

/**
 * A map keyed by untrusted strings. TypeBox's Record alone compiles to `patternProperties`, which
 * leaves a key that breaks the pattern unchecked and accepted; additionalProperties: false
 * refuses it.
 */
function KeyedBy<V extends TSchema>(key: typeof RelativePath | typeof Name, value: V) {
  return Type.Record(key, value, { additionalProperties: false });
}

export const PoolSchema = Type.Object({ size: Type.Integer({ minimum: 1, maximum: 64 }) }, { additionalProperties: false });

/** What a kill -9 can lose of a service's state (see Durability in kernel/common/protocol.ts). */
export const DurabilitySchema = Type.Union([Type.Literal('reply'), Type.Literal('periodic')]);

export const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const;

/** One route of the HTTP front door: requests for `method path` go to `service.handler`. */
export const HttpRouteSchema = Type.Object(
  {
    method: Type.Union(HTTP_METHODS.map((method) => Type.Literal(method))),
    /** An exact path (`/next`), or a prefix ending in `/*` (`/files/*`). */
    path: Type.String({ pattern: '^/[^?#\\s]*$', maxLength: 1024 }),
    service: Name,
    /** A call of the service; it receives the request and replies { status, headers, body }. */
    handler: Type.String({ minLength: 1 }),
  },
  { additionalProperties: false },
);

/** A WebSocket route: upgrade requests for `path` become connections held for `service` (its `sockets` handlers). */
export const WebSocketRouteSchema = Type.Object(
  {
    path: Type.String({ pattern: '^/[^?#\\s]*$', maxLength: 1024 }),
    service: Name,
  },
  { additionalProperties: false },
);

/**
 * The WebSocket front door's limits, for every connection of the release (defaults in
 * kernel/main/websockets.ts): a larger frame closes its connection with 1009; more connections
 * are refused with 503; a connection whose unsent bytes pass `maxBufferedBytes` (a client that
 * does not read) is closed with 1013; one that misses a pong for `pingIntervalMs` is ended.
 */
export const WebSocketLimitsSchema = Type.Object(
  {
    maxPayloadBytes: Type.Optional(Type.Integer({ minimum: 1 })),
    maxBufferedBytes: Type.Optional(Type.Integer({ minimum: 1 })),
    maxConnections: Type.Optional(Type.Integer({ minimum: 1 })),
    pingIntervalMs: Type.Optional(Type.Integer({ minimum: 100 })),
    maxWaitingEvents: Type.Optional(Type.Integer({ minimum: 1 })),
  },
  { additionalProperties: false },
);

export const HttpListenerSchema = Type.Object(
  {
    port: Type.Integer({ minimum: 0, maximum: 65535 }),
    host: Type.String({ minLength: 1 }),
    // Empty when the listener only takes WebSocket connections.
    routes: Type.Array(HttpRouteSchema),
    websockets: Type.Optional(Type.Array(WebSocketRouteSchema)),
  },
  { additionalProperties: false },
);

/** The HTTP front door: sockets the kernel's main thread owns, and the limits it enforces. */
export const HttpSchema = Type.Object(
  {
    listeners: Type.Array(HttpListenerSchema, { minItems: 1 }),
    /** Larger request bodies get 413 without reaching a service. */
    maxBodyBytes: Type.Integer({ minimum: 0 }),
    /** A larger reply body is not sent: the client gets 502 and the log says why. */
    maxReplyBytes: Type.Integer({ minimum: 0 }),
    /** A handler that has not replied by then gets the client a 504. */
    requestTimeoutMs: Type.Integer({ minimum: 1 }),
    websocket: Type.Optional(WebSocketLimitsSchema),
  },
  { additionalProperties: false },
);

/**
 * The admin listener: Prometheus' /metrics and the dashboard, read-only and behind a token;
 * false turns it off. Checked again when the config is loaded (kernel/release/config.ts).
 */
export const AdminSchema = Type.Union([
  Type.Literal(false),
  Type.Object({ host: Type.String({ minLength: 1 }), port: Type.Integer({ minimum: 0, maximum: 65535 }) }, { additionalProperties: false }),
]);

export const MigrationEdgeSchema = Type.Object({ from: Type.String(), to: Type.String(), hasDown: Type.Boolean() }, { additionalProperties: false });

export const ServiceManifestSchema = Type.Object(
  {
    /** The bundled module, a key of `files`. */
    entry: RelativePath,
    sha256: Sha256,
    vsn: Type.String({ minLength: 1 }),
    calls: Type.Array(Type.String()),
    casts: Type.Array(Type.String()),
    uses: Type.Array(Name),
    migrations: Type.Array(MigrationEdgeSchema),
    hasTerminate: Type.Boolean(),
    hasHealth: Type.Boolean(),
    stateCheck: Type.Union([Type.Literal('transitions'), Type.Literal('every-change')]),
    /** A keyed store (`keyed: true`): its swaps pre-copy the store. Absent when not keyed. */
    keyed: Type.Optional(Type.Literal(true)),
    /**
     * The arguments its calls and casts declare, by method, as JSON Schema (for people to read:
     * the worker checks with the schemas in the bundle). Absent when none declares any.
     */
    args: Type.Optional(Type.Record(Type.String(), Type.Array(Type.Record(Type.String(), Type.Unknown())))),
    /** Folder of the service's static files inside the release; null when it has none. */
    staticDir: Type.Union([RelativePath, Type.Null()]),
    /** A stateless service run on a pool of `size` worker threads (piscina); absent for a stateful one. */
    pool: Type.Optional(PoolSchema),
    /** 'reply' when every answered change is written before the answer; absent means 'periodic'. */
    durability: Type.Optional(DurabilitySchema),
  },
  { additionalProperties: false },
);

export const HooksSchema = Type.Object(
  {
    preStart: Type.Array(Type.String()),
    postStart: Type.Array(Type.String()),
    preStop: Type.Array(Type.String()),
    postStop: Type.Array(Type.String()),
    preUpgrade: Type.Array(Type.String()),
    postUpgrade: Type.Array(Type.String()),
  },
  { additionalProperties: false },
);

export const ManifestSchema = Type.Object(
  {
    schema: Type.Literal(MANIFEST_SCHEMA_VERSION),
    app: Name,
    version: Version,
    /** The kernel<->worker protocol the release was built against. */
    protocol: Type.Integer({ minimum: 1 }),
    /** The Node.js versions the release runs on (a semver range). */
    node: Type.String({ minLength: 1 }),
    drainTimeoutMs: Type.Integer({ minimum: 1 }),
    /** How long after the switch the new code is watched before the upgrade commits (0: no probation). */
    probationMs: Type.Integer({ minimum: 0 }),
    /** Durable state: checkpoint every this many ms and every this many state changes (0: off). */
    checkpointIntervalMs: Type.Integer({ minimum: 0 }),
    checkpointEveryChanges: Type.Integer({ minimum: 0 }),
    precopy: Type.Optional(
      Type.Object(
        {
          maxRounds: Type.Optional(Type.Integer({ minimum: 0, maximum: 1000 })),
          stopAtKeys: Type.Optional(Type.Integer({ minimum: 0 })),
        },
        { additionalProperties: false },
      ),
    ),
    /** Supervision: restart a crashed worker at most maxRestarts times within restartWindowMs. */
    maxRestarts: Type.Integer({ minimum: 0 }),
    restartWindowMs: Type.Integer({ minimum: 1 }),
    /** Worker threads kept booted for the next swap (absent in releases built before it existed: the kernel's default). */
    spareWorkers: Type.Optional(Type.Integer({ minimum: 0 })),
    hooks: HooksSchema,
    /** Plain data handed to every service as `ctx.config`. */
    runtimeConfig: Type.Record(Type.String(), Type.Unknown()),
    /** The HTTP front door, when the release declares one. */
    http: Type.Optional(HttpSchema),
    /** The admin listener; absent: on 127.0.0.1, any free port. */
    admin: Type.Optional(AdminSchema),
    services: KeyedBy(Name, ServiceManifestSchema),
    files: KeyedBy(RelativePath, Type.Object({ sha256: Sha256, size: Type.Integer({ minimum: 0 }) }, { additionalProperties: false })),
  },
  { additionalProperties: false },
);

export type Manifest = Static<typeof ManifestSchema>;
export type ServiceManifest = Static<typeof ServiceManifestSchema>;
export type Hooks = Static<typeof HooksSchema>;
export type HttpConfig = Static<typeof HttpSchema>;
export type HttpRoute = Static<typeof HttpRouteSchema>;
export type HttpListenerConfig = Static<typeof HttpListenerSchema>;
export type WebSocketRoute = Static<typeof WebSocketRouteSchema>;
export type WebSocketLimits = Static<typeof WebSocketLimitsSchema>;
export type PoolConfig = Static<typeof PoolSchema>;
export type AdminConfig = Static<typeof AdminSchema>;

export const ServicePlanSchema = Type.Object(
  {
    /** 'config': the same code with another runtimeConfig or other static files; it is swapped in too. */
    change: Type.Union([Type.Literal('added'), Type.Literal('removed'), Type.Literal('code'), Type.Literal('vsn'), Type.Literal('config'), Type.Literal('unchanged')]),
    fromVsn: Type.Union([Type.String(), Type.Null()]),
    toVsn: Type.Union([Type.String(), Type.Null()]),
    /** Steps run in the new code when upgrading, e.g. ["0 -> 1"]. */
    up: Type.Array(Type.String()),
    /** Steps run in this (newer) code when downgrading, e.g. ["1 -> 0"]; null when there is no down path. */
    down: Type.Union([Type.Array(Type.String()), Type.Null()]),
    /** The services the new code starts or stops using (a rewiring); absent when its uses stay the same. */
    rewired: Type.Optional(Type.Object({ uses: Type.Array(Type.String()), stopsUsing: Type.Array(Type.String()) }, { additionalProperties: false })),
  },
  { additionalProperties: false },
);

export const PlanSchema = Type.Object(
  {
    schema: Type.Literal(MANIFEST_SCHEMA_VERSION),
    /** The release this one upgrades from; null for a first release. */
    from: Type.Union([Version, Type.Null()]),
    to: Version,
    services: KeyedBy(Name, ServicePlanSchema),
    warnings: Type.Array(Type.String()),
  },
  { additionalProperties: false },
);

export type Plan = Static<typeof PlanSchema>;
export type ServicePlan = Static<typeof ServicePlanSchema>;

/**
 * Reads a manifest: JSON without prototypes, the schema, then what a schema cannot say. Throws
 * E_MANIFEST_INVALID naming the file and the problem.
 */
export function parseManifest(text: string, file: string): Manifest {
  const manifest = validateOrThrow(ManifestSchema, parseJson(text, file, 'release manifest'), file);
  const invalid = (problem: string) => theseusError('E_MANIFEST_INVALID', file, 'release manifest', problem);
  const paths = Object.keys(manifest.files);
  for (const path of paths) {
    // The schema's pattern already refused these; checked again in code so that one mistake in
    // a regular expression cannot let a path out of the release.
    const problem = releasePathProblem(path);
    if (problem !== null) throw invalid(`files: the path ${JSON.stringify(path)} ${problem}`);
  }
  // A key that is also another key's folder could not be both; refusing it means no listed file
  // can ever stand where a folder of another listed file must be created.
  const sorted = [...paths].sort();
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i]!.startsWith(`${sorted[i - 1]}/`)) throw invalid(`files: '${sorted[i - 1]}' is listed as a file and as the folder of '${sorted[i]}'`);
  }
  for (const [name, service] of Object.entries(manifest.services)) {
    const listed = Object.hasOwn(manifest.files, service.entry) ? manifest.files[service.entry] : undefined;
    if (!listed || listed.sha256 !== service.sha256) {
      throw invalid(`services.${name}.entry '${service.entry}' is not a listed file with sha256 ${service.sha256.slice(0, 12)}...`);
    }
    const staticProblem = service.staticDir === null ? null : releasePathProblem(service.staticDir);
    if (staticProblem !== null) throw invalid(`services.${name}.staticDir ${staticProblem}`);
  }
  // A listener serves HTTP routes, WebSocket routes or both; one with neither would only refuse.
  for (const [index, listener] of (manifest.http?.listeners ?? []).entries()) {
    if (listener.routes.length === 0 && (listener.websockets ?? []).length === 0) throw invalid(`/http/listeners/${index}/routes: a listener with no routes and no WebSocket routes serves nothing`);
  }
  return manifest;
}

/** Reads an upgrade plan (plan.json) the same way. */
export function parsePlan(text: string, file: string): Plan {
  return validateOrThrow(PlanSchema, parseJson(text, file, 'upgrade plan'), file);
}

function parseJson(text: string, file: string, what: string): unknown {
  try {
    return parseUntrustedJson(text);
  } catch (error) {
    throw theseusError('E_MANIFEST_INVALID', file, what, `not JSON (${(error as Error).message})`);
  }
}

/** Validates `value` against `schema`; throws E_MANIFEST_INVALID naming the file and each problem. */
export function validateOrThrow<T extends TSchema>(schema: T, value: unknown, file: string): Static<T> {
  if (Value.Check(schema, value)) return value as Static<T>;
  const problems = [...Value.Errors(schema, value)].slice(0, 5).map((error) => `${error.path || '/'}: ${error.message}`);
  throw theseusError('E_MANIFEST_INVALID', file, schemaName(schema), problems.join('; '));
}

function schemaName(schema: TSchema): string {
  if (schema === ManifestSchema) return 'release manifest';
  if (schema === PlanSchema) return 'upgrade plan';
  return 'document';
}
