// The control plane's wire protocol: the `kernel` CLI talking to a running kernel over the deploy
// root's Unix socket (var/kernel.sock). The kernel<->worker protocol is in protocol.ts.
//
// Frames are a 4-byte big-endian length, then that many bytes of UTF-8 JSON. Each frame is
// size-limited and schema-validated; every request carries the cookie from var/cookie, as an
// Erlang node's requests carry its cookie. A request gets zero or more `event` frames (progress)
// and then exactly one `result` frame.

import { Type, type Static } from '@sinclair/typebox';
import type { FrontDoorStats, HealthReport, KeptState, ServiceStatus, ServiceSwapReport } from './status.ts';
import type { PhaseEvent } from './phases.ts';
import type { ArgumentSchema, LogRecord } from './protocol.ts';

export const CONTROL_PROTOCOL_VERSION = 1;
/** Larger frames are refused before they are buffered. */
export const MAX_FRAME_BYTES = 1024 * 1024;

const NoArgs = Type.Object({}, { additionalProperties: false });

export const ControlRequestSchema = Type.Union([
  Type.Object({ v: Type.Literal(1), cookie: Type.String(), id: Type.Integer(), op: Type.Literal('ping'), args: NoArgs }, { additionalProperties: false }),
  Type.Object({ v: Type.Literal(1), cookie: Type.String(), id: Type.Integer(), op: Type.Literal('status'), args: NoArgs }, { additionalProperties: false }),
  Type.Object({ v: Type.Literal(1), cookie: Type.String(), id: Type.Integer(), op: Type.Literal('releases'), args: NoArgs }, { additionalProperties: false }),
  Type.Object({ v: Type.Literal(1), cookie: Type.String(), id: Type.Integer(), op: Type.Literal('commit'), args: NoArgs }, { additionalProperties: false }),
  Type.Object({ v: Type.Literal(1), cookie: Type.String(), id: Type.Integer(), op: Type.Literal('stop'), args: NoArgs }, { additionalProperties: false }),
  /** The running services and their call and cast names (for the console's scope and completion). */
  Type.Object({ v: Type.Literal(1), cookie: Type.String(), id: Type.Integer(), op: Type.Literal('describe'), args: NoArgs }, { additionalProperties: false }),
  /** Streams every log line as a `log` event until the connection closes; never sends a result. */
  Type.Object({ v: Type.Literal(1), cookie: Type.String(), id: Type.Integer(), op: Type.Literal('logs'), args: NoArgs }, { additionalProperties: false }),
  /** A call (or cast) to a service on the console's behalf. Arguments and reply are JSON. */
  Type.Object(
    {
      v: Type.Literal(1),
      cookie: Type.String(),
      id: Type.Integer(),
      op: Type.Literal('call'),
      args: Type.Object(
        { service: Type.String({ minLength: 1, maxLength: 64 }), method: Type.String({ minLength: 1, maxLength: 128 }), args: Type.Array(Type.Unknown(), { maxItems: 64 }) },
        { additionalProperties: false },
      ),
    },
    { additionalProperties: false },
  ),
  Type.Object(
    {
      v: Type.Literal(1),
      cookie: Type.String(),
      id: Type.Integer(),
      op: Type.Literal('upgrade'),
      args: Type.Object({ source: Type.String({ minLength: 1, maxLength: 4096 }), commit: Type.Boolean() }, { additionalProperties: false }),
    },
    { additionalProperties: false },
  ),
  Type.Object(
    {
      v: Type.Literal(1),
      cookie: Type.String(),
      id: Type.Integer(),
      op: Type.Literal('downgrade'),
      // A version, or (like upgrade's source) a release folder or tarball to go back to: a path,
      // so as long as one. At 64 a tarball in a deep folder was refused as a bad frame.
      args: Type.Object({ version: Type.String({ minLength: 1, maxLength: 4096 }), commit: Type.Boolean() }, { additionalProperties: false }),
    },
    { additionalProperties: false },
  ),
  Type.Object(
    {
      v: Type.Literal(1),
      cookie: Type.String(),
      id: Type.Integer(),
      op: Type.Literal('remove'),
      args: Type.Object({ version: Type.String({ minLength: 1, maxLength: 64 }) }, { additionalProperties: false }),
    },
    { additionalProperties: false },
  ),
]);

export type ControlRequest = Static<typeof ControlRequestSchema>;
export type ControlOpName = ControlRequest['op'];

/** What an upgrade tells as it goes: each phase as it ends (kernel/common/phases.ts). */
export type { PhaseEvent } from './phases.ts';

/** What `status` answers. */
export interface StatusResult {
  pid: number;
  /** The deploy root the kernel runs from. */
  root: string;
  app: string;
  release: string;
  permanent: string | null;
  uptimeMs: number;
  services: ServiceStatus[];
  lastUpgrade: { from: string; to: string; at: string; committed: boolean; services: SwapResult['report']['services'] } | null;
  /** The HTTP front door, when the running release declares one. */
  http: FrontDoorStats | null;
  /** What GET /_theseus/health answers on the front door: ok, or draining once a stop began. */
  health: HealthReport;
  /** The last state of each service a release removed, kept for a release that brings it back. */
  kept: KeptState[];
}

/** What `releases` answers: the registry, with the running release marked. */
export interface ReleaseEntry {
  version: string;
  status: string;
  installedAt: string;
  manifestSha256: string;
  running: boolean;
  /** Services this release's code wrote the kept state of (a later release removed them); absent when none. */
  keptState?: string[];
}

/** What `upgrade` and `downgrade` answer. */
export interface SwapResult {
  from: string;
  to: string;
  committed: boolean;
  report: {
    services: ServiceSwapReport[];
  };
}

/** What `describe` answers. */
export interface ServiceDescription {
  name: string;
  release: string;
  vsn: string;
  calls: string[];
  casts: string[];
  /** The arguments of each call or cast that declares them, in order, as JSON Schema. */
  args: Record<string, readonly ArgumentSchema[]>;
}

/**
 * What each request answers, op by op: the kernel's handler must return it, and `request()` in
 * the CLI returns it, so neither side casts. `logs` never answers: it streams until closed.
 */
export interface ControlReplies {
  ping: { pong: true; pid: number; release: string };
  status: StatusResult;
  releases: ReleaseEntry[];
  commit: { permanent: string };
  /** graceMs: how long the kernel keeps answering health 'draining' before its listeners close. */
  stop: { stopping: true; pid: number; graceMs: number };
  describe: ServiceDescription[];
  logs: null;
  call: { cast: true } | { reply: unknown };
  upgrade: SwapResult;
  downgrade: SwapResult;
  remove: { removed: string };
}

export type ControlResponse =
  | { id: number; kind: 'event'; event: PhaseEvent }
  | { id: number; kind: 'log'; record: LogRecord }
  | { id: number; kind: 'result'; ok: true; result: unknown }
  | { id: number; kind: 'result'; ok: false; error: { code: string; message: string; phase?: string } };

export function encodeFrame(value: unknown): Buffer {
  const body = Buffer.from(JSON.stringify(value), 'utf8');
  const header = Buffer.alloc(4);
  header.writeUInt32BE(body.length, 0);
  return Buffer.concat([header, body]);
}

/**
 * Splits a byte stream into frames. Returns the frames found and the unconsumed rest, or a
 * reason to drop the connection.
 */
export function decodeFrames(buffer: Buffer): { frames: unknown[]; rest: Buffer } | { error: 'too-large' | 'not-json'; size?: number } {
  const frames: unknown[] = [];
  let offset = 0;
  while (buffer.length - offset >= 4) {
    const size = buffer.readUInt32BE(offset);
    if (size > MAX_FRAME_BYTES) return { error: 'too-large', size };
    if (buffer.length - offset - 4 < size) break;
    const body = buffer.subarray(offset + 4, offset + 4 + size).toString('utf8');
    try {
      frames.push(JSON.parse(body));
    } catch {
      return { error: 'not-json' };
    }
    offset += 4 + size;
  }
  return { frames, rest: buffer.subarray(offset) };
}
