// Swap-benchmark keyed service, version 1 (keyed-state.ts). Both versions keep state vsn '1', so
// a swap between them measures only moving the store and the ports.
import { defineService } from '../../../kernel/service.ts';
import { fillStore, info, nextCall, type KeyedBenchState } from './keyed-state.ts';

export default defineService({
  vsn: '1',
  keyed: true,
  init: ({ store }): KeyedBenchState => fillStore(store),
  calls: {
    next: ({ state, store }) => nextCall('v1', state, store),
    info: ({ store }) => info('v1', store),
  },
});
