// Release configuration shared by every version of the chat example: the versions differ in
// their code and package.json version. Each version's theseus.config.ts re-exports this;
// `./chat.ts` is resolved from that version's folder.
import { defineRelease } from '../../../kernel/release/config.ts';

export default defineRelease({
  app: 'chat',
  services: {
    // Rooms and members are plain data; a kill -9 loses at most the last second of changes,
    // and the connections themselves die with the process anyway.
    chat: { entry: './chat.ts' },
  },
  drainTimeoutMs: 5000,
  probationMs: 300,
  node: '>=20.6',
  hooks: {},
  runtimeConfig: {},
  http: {
    listeners: [
      {
        // Port 0 takes any free port (`kernel status` shows it); CHAT_HTTP_PORT fixes it at build time.
        port: Number(process.env.CHAT_HTTP_PORT ?? 0),
        host: process.env.CHAT_HTTP_HOST ?? '127.0.0.1',
        websockets: [{ path: '/chat', service: 'chat' }],
      },
    ],
  },
});
