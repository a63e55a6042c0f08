// Baseline (c) of scripts/bench.ts: the task a one-thread piscina pool runs for every call.
export default function increment(x) {
  return x + 1;
}
