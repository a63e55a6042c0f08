// Swap-benchmark service, second version. blob-v1.ts is the same service with different code (its
// replies are tagged 'v2'); both keep state vsn '1', so a swap between them needs no migration and
// measures only the cost of moving the state and the ports. See blob-state.ts for the state.
import { defineService } from '../../../kernel/service.ts';
import { initialState, stateSize, type BenchState } from './blob-state.ts';

export default defineService({
  vsn: '1',
  init: (): BenchState => initialState(),
  calls: {
    /** Replies 'v2:<n>' and increments n: which code answered, and the call's place in the sequence. */
    next: ({ state }) => ({ reply: `v2:${state.n}`, state: { ...state, n: state.n + 1 } }),
    /** Lets the benchmark check that the state it asked for is the state it got. */
    info: ({ state }) => ({ reply: { shape: state.shape, bytes: stateSize(state), code: 'v2' } }),
  },
});
