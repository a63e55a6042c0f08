// Sequence server, release 0.1.0: hands out consecutive numbers.
// State vsn "0" is the bare current number.
import { defineService } from '../../../kernel/service.ts';
import { deltaSchema, sequenceArgs } from '../shared/args.ts';
import { readDelta } from '../shared/http.ts';

export default defineService({
  vsn: '0',
  // Every call and cast declares its arguments: the kernel refuses others (E_ARGS_INVALID).
  args: { ...sequenceArgs, incrementNumber: [deltaSchema('added to the current number, once')] },
  init: () => 456,
  calls: {
    nextNumber: ({ state }) => ({ reply: state, state: state + 1 }),
    // GET /next and POST /increment on the HTTP front door.
    httpNext: ({ state, release }) => ({ reply: { body: { number: state, release } }, state: state + 1 }),
    httpIncrement: ({ state }, request) => {
      const read = readDelta(request);
      if ('reply' in read) return { reply: read.reply };
      return { reply: { body: { next: state + read.delta } }, state: state + read.delta };
    },
  },
  casts: {
    // Adds delta to the current number, once.
    incrementNumber: ({ state }, delta) => ({ state: state + delta }),
  },
});
