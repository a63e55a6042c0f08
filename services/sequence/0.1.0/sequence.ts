// Sequence server, release 0.1.0: hands out consecutive numbers.
// State vsn "0" is the bare current number.
import { defineService, type HttpRequest } from '../../../kernel/service.ts';
import { readDelta } from '../shared/http.ts';

export default defineService({
  vsn: '0',
  init: () => 456,
  calls: {
    nextNumber: ({ state }) => ({ reply: state, state: state + 1 }),
    // GET /next and POST /increment on the HTTP front door.
    httpNext: ({ state, release }) => ({ reply: { body: { number: state, release } }, state: state + 1 }),
    httpIncrement: ({ state }, request: HttpRequest) => {
      const read = readDelta(request);
      if ('reply' in read) return { reply: read.reply };
      return { reply: { body: { next: state + read.delta } }, state: state + read.delta };
    },
  },
  casts: {
    // Adds delta to the current number, once.
    incrementNumber: ({ state }, delta: number) => ({ state: state + delta }),
  },
});
