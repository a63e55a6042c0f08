// The number in a reply of nextNumber(): 0.1.0 replies with the number, 0.2.0 and 0.3.0 with
// "The next number is N". Used by the scripts that drive the example (demo, soak, bench:http).
export function sequenceNumber(reply: unknown): number {
  if (typeof reply === 'number') return reply;
  const match = /(-?\d+)$/.exec(String(reply));
  if (!match) throw new Error(`unexpected reply of nextNumber(): ${JSON.stringify(reply)}`);
  return Number(match[1]);
}
