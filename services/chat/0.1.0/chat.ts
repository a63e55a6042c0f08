// Chat server, release 0.1.0: rooms of WebSocket connections, no history.
// State vsn "1": who is connected, by connection id, and the members of each room.
import { defineService, type ConnectionId, type SocketInfo, type SocketSend } from '../../../kernel/service.ts';
import { closed, errorFrame, frame, parseClientFrame, roomAndName } from '../shared/protocol.ts';

export interface Member {
  room: string;
  name: string;
}

export interface ChatState {
  members: Record<ConnectionId, Member>;
  rooms: Record<string, ConnectionId[]>;
}

function joined(state: ChatState, id: ConnectionId, member: Member): ChatState {
  return { members: { ...state.members, [id]: member }, rooms: { ...state.rooms, [member.room]: [...(state.rooms[member.room] ?? []), id] } };
}

function left(state: ChatState, id: ConnectionId): ChatState {
  const member = state.members[id];
  if (!member) return state;
  const { [id]: _gone, ...members } = state.members;
  const rooms = { ...state.rooms };
  const rest = (rooms[member.room] ?? []).filter((other) => other !== id);
  if (rest.length > 0) rooms[member.room] = rest;
  else delete rooms[member.room];
  return { members, rooms };
}

/** Tells the rest of `member`'s room that `id` came or went. */
function presence(state: ChatState, type: 'joined' | 'left', id: ConnectionId, member: Member): SocketSend[] {
  const others = (state.rooms[member.room] ?? []).filter((other) => other !== id);
  return others.length > 0 ? [{ to: others, data: frame({ type, room: member.room, id, name: member.name }) }] : [];
}

export default defineService({
  vsn: '1',
  init: (): ChatState => ({ members: {}, rooms: {} }),
  sockets: {
    open({ state, release }, id, request) {
      const member = roomAndName(id, request);
      const next = joined(state, id, member);
      const welcome = { data: frame({ type: 'welcome', id, room: member.room, members: next.rooms[member.room]!.length, release }) };
      return { state: next, send: [welcome, ...presence(next, 'joined', id, member)] };
    },
    message({ state, release }, id, data) {
      const member = state.members[id];
      const parsed = parseClientFrame(data);
      if ('problem' in parsed || !member) return { send: [errorFrame('problem' in parsed ? parsed.problem : 'this connection is in no room; reconnect')] };
      if (parsed.type === 'say') {
        const said = frame({ type: 'said', room: member.room, from: id, name: member.name, text: parsed.text, seq: parsed.seq, release });
        return { send: [{ to: state.rooms[member.room] ?? [id], data: said }] };
      }
      const moved = { ...member, room: parsed.room };
      const next = joined(left(state, id), id, moved);
      const welcome = { data: frame({ type: 'welcome', id, room: moved.room, members: next.rooms[moved.room]!.length, release }) };
      return { state: next, send: [...presence(state, 'left', id, member), welcome, ...presence(next, 'joined', id, moved)] };
    },
    close: ({ state }, id) => closed(state, id, left, presence),
    // The state came from the last checkpoint: keep the connections still open, add the ones
    // opened since (in the room they asked for), forget the ones that closed meanwhile.
    restarted({ state }, open: readonly SocketInfo[]) {
      let next: ChatState = { members: {}, rooms: {} };
      for (const info of open) next = joined(next, info.id, state.members[info.id] ?? roomAndName(info.id, info));
      return { state: next };
    },
  },
});
