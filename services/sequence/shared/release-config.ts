// Release configuration shared by every version of the example sequence app: the versions differ
// in their code and their package.json version, not in how they are released. Each version's
// theseus.config.ts re-exports this; `./sequence.ts` is resolved from that version's folder.
import { defineRelease } from '../../../kernel/release/config.ts';
import { sequenceHttp } from './http-config.ts';

export default defineRelease({
  app: 'sequence',
  services: {
    // An ID generator must never hand out a number twice, even after a kill -9: each reply waits
    // until the state that produced it is on disk (group commit keeps that cheap under load).
    sequence: { entry: './sequence.ts', durability: 'reply' },
  },
  drainTimeoutMs: 5000,
  // Watch each upgrade for this long before making it permanent.
  probationMs: 300,
  node: '>=20.6',
  hooks: {},
  runtimeConfig: {},
  // GET /next and POST /increment, on the HTTP front door.
  http: sequenceHttp,
});
