// Sequence server, release 0.1.0: hands out consecutive numbers.
// State vsn "0" is the bare current number.
import { defineService } from '../../../kernel/service.ts';

export default defineService({
  vsn: '0',
  init: () => 456,
  calls: {
    nextNumber: ({ state }) => ({ reply: state, state: state + 1 }),
  },
  casts: {
    // Adds delta to the current number, once.
    incrementNumber: ({ state }, delta: number) => ({ state: state + delta }),
  },
});
