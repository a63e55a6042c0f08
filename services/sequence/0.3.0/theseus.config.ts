// Release configuration of the example sequence app; its version is in package.json next to it.
import { defineRelease } from '../../../kernel/release/config.ts';

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
  // The HTTP front door. Port 0 takes any free port (kernel status shows it); the port is read
  // when the release is built, so SEQUENCE_HTTP_PORT=4000 kernel release ... fixes it.
  http: {
    listeners: [
      {
        port: Number(process.env.SEQUENCE_HTTP_PORT ?? 0),
        host: '127.0.0.1',
        routes: [
          { method: 'GET', path: '/next', service: 'sequence', handler: 'httpNext' },
          { method: 'POST', path: '/increment', service: 'sequence', handler: 'httpIncrement' },
        ],
      },
    ],
    maxBodyBytes: 64 * 1024,
  },
});
