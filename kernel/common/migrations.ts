// Chains of state migrations. Pure functions, used by the kernel's check phase (is there a path?),
// inside workers (run it) and later by the release planner (write it into the plan).
//
// Each migration is an explicit edge `from -> to` with an `up` and an optional `down`. Matching on
// exact pairs, never on "any older vsn", avoids the trap of a down clause that also matches a
// future upgrade.

export interface MigrationEdge {
  from: string;
  to: string;
  /** Whether this edge can also be walked backwards (it has a `down`). */
  hasDown: boolean;
}

export interface MigrationStep {
  from: string;
  to: string;
  direction: 'up' | 'down';
}

/**
 * The shortest chain of steps that takes state from `fromVsn` to `toVsn`, or null when none exists.
 * `direction: 'up'` walks edges forwards with `up`; `'down'` walks them backwards with `down`.
 */
export function findMigrationPath(
  edges: readonly MigrationEdge[],
  fromVsn: string,
  toVsn: string,
  direction: 'up' | 'down',
): MigrationStep[] | null {
  if (fromVsn === toVsn) return [];
  const previous = new Map<string, MigrationStep>();
  const visited = new Set<string>([fromVsn]);
  const queue: string[] = [fromVsn];
  while (queue.length > 0) {
    const at = queue.shift()!;
    for (const edge of edges) {
      const step: MigrationStep | null =
        direction === 'up'
          ? edge.from === at
            ? { from: edge.from, to: edge.to, direction }
            : null
          : edge.to === at && edge.hasDown
            ? { from: edge.to, to: edge.from, direction }
            : null;
      if (!step || visited.has(step.to)) continue;
      visited.add(step.to);
      previous.set(step.to, step);
      if (step.to === toVsn) {
        const path: MigrationStep[] = [];
        for (let cursor: string = toVsn; cursor !== fromVsn; ) {
          const back = previous.get(cursor)!;
          path.unshift(back);
          cursor = back.from;
        }
        return path;
      }
      queue.push(step.to);
    }
  }
  return null;
}

export function formatPath(steps: readonly MigrationStep[]): string {
  if (steps.length === 0) return 'none';
  return [steps[0]!.from, ...steps.map((step) => step.to)].join(' -> ');
}
