// The benchmark's CPU-bound handler: the same module runs as one stateful worker and as a pooled
// service, so the two differ only in how many threads serve it.
import { defineService } from '../../../kernel/service.ts';

function fib(n: number): number {
  return n < 2 ? n : fib(n - 1) + fib(n - 2);
}

export default defineService({
  vsn: '0',
  // The stateful run needs a state; it never changes. The pooled run has none.
  init: () => null,
  calls: {
    work: (_ctx, n: number) => ({ reply: fib(n) }),
  },
});
