// Release configuration of the example sequence app; its version is in package.json next to it.
import { defineRelease } from '../../../kernel/release/config.ts';
import { sequenceHttp } from '../shared/http-config.ts';

export default defineRelease({
  app: 'sequence',
  services: {
    sequence: { entry: './sequence.ts' },
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
