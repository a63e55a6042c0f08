// Swap-benchmark keyed service, version 2 (keyed-state.ts). Both versions keep state vsn '1', so
// a swap between them measures only moving the store and the ports.
import { keyedBenchService } from './keyed-state.ts';

export default keyedBenchService('v2');
