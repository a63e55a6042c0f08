// The HTTP front door's batches: requests to one service that arrive close together travel to its
// worker as one message (a BATCH_HTTP batch), which costs the main thread far less per request
// than a message each. A lane per service bounds how many batches are out at once.
// Runs in the kernel's main thread.

import type { ServerResponse } from 'node:http';
import type { WireHttpRequest } from '../common/http-codec.ts';
import type { BatchedCall } from '../common/protocol.ts';
import type { HttpRoute } from '../release/manifest.ts';

/** A batch holds at most this many requests; more start the next one. */
export const MAX_BATCH = 256;
/**
 * Batches sent to one service and not answered yet, at most. A service runs its calls one at a
 * time, so one batch in its queue while it works on another keeps it busy; what arrives meanwhile
 * waits here and goes out as one larger batch. Fewer, larger messages cost the main thread less.
 */
export const MAX_BATCHES_IN_FLIGHT = 2;

export interface Batch {
  /** [handler, request] pairs, as the service takes them. */
  calls: BatchedCall[];
  routes: HttpRoute[];
  /** Each request's response; null once it was answered. */
  responses: Array<ServerResponse | null>;
  /** When each request gets a 504 if its service has not answered. */
  deadlines: number[];
  /** The size of each request's body, counted against maxBufferedBodyBytes until answered. */
  bodyBytes: number[];
  /** Requests not answered yet. */
  pending: number;
  /** Its lane, while it counts against the lane's batches in flight. */
  lane: Lane | null;
}

export function newBatch(): Batch {
  return { calls: [], routes: [], responses: [], deadlines: [], bodyBytes: [], pending: 0, lane: null };
}

export function addToBatch(batch: Batch, route: HttpRoute, wire: WireHttpRequest, response: ServerResponse, deadline: number, bodyBytes: number): void {
  batch.calls.push([route.handler, wire]);
  batch.routes.push(route);
  batch.responses.push(response);
  batch.deadlines.push(deadline);
  batch.bodyBytes.push(bodyBytes);
  batch.pending++;
}

/** Removes the requests of a batch not sent yet that were answered already (timed out). */
export function dropAnswered(batch: Batch): void {
  const keep = batch.responses.flatMap((response, i) => (response ? [i] : []));
  batch.calls = keep.map((i) => batch.calls[i]!);
  batch.routes = keep.map((i) => batch.routes[i]!);
  batch.responses = keep.map((i) => batch.responses[i]!);
  batch.deadlines = keep.map((i) => batch.deadlines[i]!);
  batch.bodyBytes = keep.map((i) => batch.bodyBytes[i]!);
}

/** One service's batches: the ones waiting to go, and how many are out. */
export interface Lane {
  service: string;
  queued: Batch[];
  inFlight: number;
}
