// What the benches' command lines share: --help, and numbers that must be positive integers.

/** Prints the usage and exits when --help was given. */
export function helpIfAsked(help: boolean | undefined, usage: string): void {
  if (!help) return;
  process.stdout.write(`${usage}\n`);
  process.exit(0);
}

/** Reads positive integer options of `bench`: a bad value prints why, and the usage, and exits 2. */
export function positiveIntegers(bench: string, usage: string): (name: string, value: string | undefined, fallback: number) => number {
  return (name, value, fallback) => {
    if (value === undefined) return fallback;
    const parsed = Number(value);
    if (!Number.isInteger(parsed) || parsed < 1) {
      process.stderr.write(`${bench}: --${name} must be a positive integer (got '${value}')\n\n${usage}\n`);
      process.exit(2);
    }
    return parsed;
  };
}
