// Sequence server, release 0.2.0: the reply becomes a sentence. The state is unchanged, so its
// vsn stays "0" and no migration is needed.
import { defineService, type HttpRequest } from '../../../kernel/service.ts';
import { readDelta } from '../shared/http.ts';

export default defineService({
  vsn: '0',
  init: () => 456,
  calls: {
    nextNumber: ({ state }) => ({ reply: `The next number is ${state}`, state: state + 1 }),
    httpNext: ({ state, release }) => ({ reply: { body: { number: state, release } }, state: state + 1 }),
    httpIncrement: ({ state }, request: HttpRequest) => {
      const read = readDelta(request);
      if ('reply' in read) return { reply: read.reply };
      return { reply: { body: { next: state + read.delta } }, state: state + read.delta };
    },
  },
  casts: {
    incrementNumber: ({ state }, delta: number) => ({ state: state + delta }),
  },
});
