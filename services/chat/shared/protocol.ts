// The chat's wire protocol, shared by every release: JSON text frames.
//
//   client -> server   {"type":"say","text":"hi","seq":1}   say something to the room (seq: the client's own counter, echoed back)
//                      {"type":"join","room":"games"}       move to another room
//   server -> client   {"type":"welcome","id","room","members","release"}     once, on connect (0.2.0 adds "history")
//                      {"type":"said","room","from","name","text","seq","release"}  to every member of the room, the sender too
//                      {"type":"joined"|"left","room","id","name"}            to the others in the room
//                      {"type":"error","message"}                             to a client whose frame was not understood

import type { ConnectionId, SocketRequest, SocketResult, SocketSend } from '../../../kernel/service.ts';

export type ClientFrame = { type: 'say'; text: string; seq?: number } | { type: 'join'; room: string };

/** The room a connection starts in (`/chat?room=games`), and the name it goes by (`&name=ada`). */
export function roomAndName(id: ConnectionId, request: Pick<SocketRequest, 'query'>): { room: string; name: string } {
  const first = (value: string | string[] | undefined) => (Array.isArray(value) ? value[0] : value);
  return { room: first(request.query.room) || 'lobby', name: first(request.query.name) || id };
}

/** A client's frame, or why it is not one (answered with an error frame, never a throw). */
export function parseClientFrame(data: string | Uint8Array): ClientFrame | { problem: string } {
  if (typeof data !== 'string') return { problem: 'send JSON text frames, not binary ones' };
  let frame: unknown;
  try {
    frame = JSON.parse(data);
  } catch {
    return { problem: 'a frame must be JSON, like {"type":"say","text":"hi"}' };
  }
  const { type, text, room, seq } = (frame ?? {}) as Record<string, unknown>;
  if (type === 'say' && typeof text === 'string' && (seq === undefined || typeof seq === 'number')) return { type, text, ...(seq === undefined ? {} : { seq }) };
  if (type === 'join' && typeof room === 'string' && room !== '') return { type, room };
  return { problem: 'the frame must be {"type":"say","text":string,"seq"?:number} or {"type":"join","room":string}' };
}

export const frame = (value: Record<string, unknown>): string => JSON.stringify(value);
export const errorFrame = (message: string) => ({ data: frame({ type: 'error', message }) });

/** A connection closed: it leaves its room, and the others there are told (the same in every release). */
export function closed<S extends { members: Record<ConnectionId, { room: string; name: string }> }>(
  state: S,
  id: ConnectionId,
  left: (state: S, id: ConnectionId) => S,
  presence: (state: S, type: 'left', id: ConnectionId, member: { room: string; name: string }) => SocketSend[],
): SocketResult<S> | undefined {
  const member = state.members[id];
  if (!member) return undefined;
  const next = left(state, id);
  return { state: next, send: presence(next, 'left', id, member) };
}
