// Baseline (a) of scripts/bench.ts: the smallest honest RPC over a MessagePort.
//
// The main thread transfers one end of a MessageChannel in workerData (the kernel also gives each
// caller its own MessageChannel, so both travel the same kind of port). Each request [id, x] is
// answered at once with [id, x + 1]; the main thread resolves the matching promise by id.
import { parentPort, workerData } from 'node:worker_threads';

const port = workerData.port;
port.on('message', (request) => {
  port.postMessage([request[0], request[1] + 1]);
});
parentPort.postMessage('ready');
