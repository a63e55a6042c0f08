// Chat server, release 0.2.0: rooms keep their recent history, which a newcomer is given.
// State vsn "2": each room holds its members and its last HISTORY_LIMIT messages. The migration
// from vsn "1" gives every room an empty history; the way down drops the histories.
import { defineService, type ConnectionId, type SocketInfo, type SocketSend } from '../../../kernel/service.ts';
import { closed, errorFrame, frame, parseClientFrame, roomAndName } from '../shared/protocol.ts';

export const HISTORY_LIMIT = 20;

interface Member {
  room: string;
  name: string;
}

interface Said {
  from: ConnectionId;
  name: string;
  text: string;
}

interface Room {
  members: ConnectionId[];
  history: Said[];
}

interface ChatState {
  members: Record<ConnectionId, Member>;
  rooms: Record<string, Room>;
}

/** The shape of release 0.1.0's state (vsn "1"). */
interface ChatStateV1 {
  members: Record<ConnectionId, Member>;
  rooms: Record<string, ConnectionId[]>;
}

function joined(state: ChatState, id: ConnectionId, member: Member): ChatState {
  const room = state.rooms[member.room] ?? { members: [], history: [] };
  return { members: { ...state.members, [id]: member }, rooms: { ...state.rooms, [member.room]: { ...room, members: [...room.members, id] } } };
}

function left(state: ChatState, id: ConnectionId): ChatState {
  const member = state.members[id];
  if (!member) return state;
  const { [id]: _gone, ...members } = state.members;
  const room = state.rooms[member.room]!;
  // An empty room keeps its history, for whoever comes next.
  return { members, rooms: { ...state.rooms, [member.room]: { ...room, members: room.members.filter((other) => other !== id) } } };
}

function presence(state: ChatState, type: 'joined' | 'left', id: ConnectionId, member: Member): SocketSend[] {
  const others = (state.rooms[member.room]?.members ?? []).filter((other) => other !== id);
  return others.length > 0 ? [{ to: others, data: frame({ type, room: member.room, id, name: member.name }) }] : [];
}

function welcome(state: ChatState, id: ConnectionId, member: Member, release: string): SocketSend {
  const room = state.rooms[member.room]!;
  return { data: frame({ type: 'welcome', id, room: member.room, members: room.members.length, history: room.history, release }) };
}

export default defineService({
  vsn: '2',
  init: (): ChatState => ({ members: {}, rooms: {} }),
  migrations: [
    {
      from: '1',
      to: '2',
      up: (old: ChatStateV1): ChatState => ({
        members: old.members,
        rooms: Object.fromEntries(Object.entries(old.rooms).map(([name, members]) => [name, { members, history: [] }])),
      }),
      // Release 0.1.0 keeps no history, and no empty rooms.
      down: (state: ChatState): ChatStateV1 => ({
        members: state.members,
        rooms: Object.fromEntries(Object.entries(state.rooms).flatMap(([name, room]) => (room.members.length > 0 ? [[name, room.members]] : []))),
      }),
    },
  ],
  sockets: {
    open({ state, release }, id, request) {
      const member = roomAndName(id, request);
      const next = joined(state, id, member);
      return { state: next, send: [welcome(next, id, member, release), ...presence(next, 'joined', id, member)] };
    },
    message({ state, release }, id, data) {
      const member = state.members[id];
      const parsed = parseClientFrame(data);
      if ('problem' in parsed || !member) return { send: [errorFrame('problem' in parsed ? parsed.problem : 'this connection is in no room; reconnect')] };
      if (parsed.type === 'say') {
        const room = state.rooms[member.room]!;
        const history = [...room.history, { from: id, name: member.name, text: parsed.text }].slice(-HISTORY_LIMIT);
        const said = frame({ type: 'said', room: member.room, from: id, name: member.name, text: parsed.text, seq: parsed.seq, release });
        return { state: { ...state, rooms: { ...state.rooms, [member.room]: { ...room, history } } }, send: [{ to: room.members, data: said }] };
      }
      const moved = { ...member, room: parsed.room };
      const next = joined(left(state, id), id, moved);
      return { state: next, send: [...presence(state, 'left', id, member), welcome(next, id, moved, release), ...presence(next, 'joined', id, moved)] };
    },
    close: ({ state }, id) => closed(state, id, left, presence),
    // As in 0.1.0, and the rooms keep their histories.
    restarted({ state }, open: readonly SocketInfo[]) {
      let next: ChatState = { members: {}, rooms: Object.fromEntries(Object.entries(state.rooms).map(([name, room]) => [name, { ...room, members: [] }])) };
      for (const info of open) next = joined(next, info.id, state.members[info.id] ?? roomAndName(info.id, info));
      return { state: next };
    },
  },
});
