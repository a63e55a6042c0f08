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

export const MANIFEST_SCHEMA_VERSION = 1;

const Sha256 = Type.String({ pattern: '^[0-9a-f]{64}$' });
const Version = Type.String({ pattern: '^\\d+\\.\\d+\\.\\d+(?:-[0-9A-Za-z.-]+)?(?:\\+[0-9A-Za-z.-]+)?$' });
/** A path inside a release: relative, forward slashes, no `..`, no empty segments. */
const RelativePath = Type.String({ pattern: '^(?!/)(?!.*(?:^|/)\\.\\.?(?:/|$))[^\\\\\\0]+$', maxLength: 1024 });
const Name = Type.String({ pattern: '^[A-Za-z][A-Za-z0-9_-]{0,63}$' });

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

export const HttpListenerSchema = Type.Object(
  {
    port: Type.Integer({ minimum: 0, maximum: 65535 }),
    host: Type.String({ minLength: 1 }),
    routes: Type.Array(HttpRouteSchema, { minItems: 1 }),
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
  },
  { additionalProperties: false },
);

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
    /** Supervision: restart a crashed worker at most maxRestarts times within restartWindowMs. */
    maxRestarts: Type.Integer({ minimum: 0 }),
    restartWindowMs: Type.Integer({ minimum: 1 }),
    hooks: HooksSchema,
    /** Plain data handed to every service as `ctx.config`. */
    runtimeConfig: Type.Record(Type.String(), Type.Unknown()),
    /** The HTTP front door, when the release declares one. */
    http: Type.Optional(HttpSchema),
    services: Type.Record(Name, ServiceManifestSchema),
    files: Type.Record(RelativePath, Type.Object({ sha256: Sha256, size: Type.Integer({ minimum: 0 }) }, { additionalProperties: false })),
  },
  { additionalProperties: false },
);

export type Manifest = Static<typeof ManifestSchema>;
export type ServiceManifest = Static<typeof ServiceManifestSchema>;
export type Hooks = Static<typeof HooksSchema>;
export type HttpConfig = Static<typeof HttpSchema>;
export type HttpRoute = Static<typeof HttpRouteSchema>;
export type HttpListenerConfig = Static<typeof HttpListenerSchema>;
export type PoolConfig = Static<typeof PoolSchema>;

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
  },
  { additionalProperties: false },
);

export const PlanSchema = Type.Object(
  {
    schema: Type.Literal(MANIFEST_SCHEMA_VERSION),
    /** The release this one upgrades from; null for a first release. */
    from: Type.Union([Version, Type.Null()]),
    to: Version,
    services: Type.Record(Name, ServicePlanSchema),
    warnings: Type.Array(Type.String()),
  },
  { additionalProperties: false },
);

export type Plan = Static<typeof PlanSchema>;
export type ServicePlan = Static<typeof ServicePlanSchema>;

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
