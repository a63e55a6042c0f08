// Sequence server, release 0.2.0: the reply becomes a sentence. The state is unchanged, so its
// vsn stays "0" and no migration is needed.
import { defineService } from '../../../kernel/service.ts';
import { deltaSchema, sequenceArgs } from '../shared/args.ts';
import { readDelta } from '../shared/http.ts';

export default defineService({
  vsn: '0',
  // Every call and cast declares its arguments: the kernel refuses others (E_ARGS_INVALID).
  args: { ...sequenceArgs, incrementNumber: [deltaSchema('added to the current number, once')] },
  init: () => 456,
  calls: {
    nextNumber: ({ state }) => ({ reply: `The next number is ${state}`, state: state + 1 }),
    httpNext: ({ state, release }) => ({ reply: { body: { number: state, release } }, state: state + 1 }),
    httpIncrement: ({ state }, request) => {
      const read = readDelta(request);
      if ('reply' in read) return { reply: read.reply };
      return { reply: { body: { next: state + read.delta } }, state: state + read.delta };
    },
  },
  casts: {
    incrementNumber: ({ state }, delta) => ({ state: state + delta }),
  },
});
