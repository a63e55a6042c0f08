// Sequence server, release 0.2.0: the reply becomes a sentence. The state is unchanged, so its
// vsn stays "0" and no migration is needed.
import { defineService } from '../../../kernel/service.ts';

export default defineService({
  vsn: '0',
  init: () => 456,
  calls: {
    nextNumber: ({ state }) => ({ reply: `The next number is ${state}`, state: state + 1 }),
  },
  casts: {
    incrementNumber: ({ state }, delta: number) => ({ state: state + delta }),
  },
});
