// Backlog-benchmark service: each call awaits about a millisecond before it answers, and handlers
// run one at a time, so 200 callers keep about 200 messages queued inside its worker. The swap
// pause must not grow with that backlog: it moves to the new worker instead of being drained.
// backlog-v1.ts and backlog-v2.ts export it with different tags, so their bundles differ.
import { setTimeout as sleep } from 'node:timers/promises';
import { defineService } from '../../../kernel/service.ts';

export function backlogService(tag: string) {
  return defineService({
    vsn: '1',
    init: () => 0,
    calls: {
      next: async ({ state }) => {
        await sleep(1);
        return { reply: `${tag}:${state}`, state: state + 1 };
      },
      /** The same without the wait: the baseline, where calls do not pile up behind a handler. */
      nextNow: ({ state }) => ({ reply: `${tag}:${state}`, state: state + 1 }),
    },
  });
}
