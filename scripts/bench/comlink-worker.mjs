// Baseline (b) of scripts/bench.ts: comlink over its Node adapter, exposing one trivial method on
// the worker's parentPort (comlink's documented way to use a Node worker).
import { parentPort } from 'node:worker_threads';
import * as Comlink from 'comlink/dist/esm/comlink.mjs';
import nodeEndpoint from 'comlink/dist/esm/node-adapter.mjs';

Comlink.expose({ increment: (x) => x + 1 }, nodeEndpoint(parentPort));
