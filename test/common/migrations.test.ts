import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { findMigrationPath, formatPath, type MigrationEdge } from '../../kernel/common/migrations.ts';

const chain: MigrationEdge[] = [
  { from: '0', to: '1', hasDown: true },
  { from: '1', to: '2', hasDown: true },
  { from: '2', to: '3', hasDown: false },
];

test('up paths chain edges forwards', () => {
  assert.equal(formatPath(findMigrationPath(chain, '0', '2', 'up')!), '0 -> 1 -> 2');
  assert.equal(formatPath(findMigrationPath(chain, '1', '3', 'up')!), '1 -> 2 -> 3');
  assert.deepEqual(findMigrationPath(chain, '2', '2', 'up'), []);
});

test('down paths walk edges backwards, only through edges that have a down', () => {
  assert.equal(formatPath(findMigrationPath(chain, '2', '0', 'down')!), '2 -> 1 -> 0');
  assert.equal(findMigrationPath(chain, '3', '2', 'down'), null);
});

test('a down edge never matches an upgrade, and an up edge never a downgrade', () => {
  // The Distillery trap: a clause meant for going down that also matched a future upgrade.
  assert.equal(findMigrationPath(chain, '1', '0', 'up'), null);
  assert.equal(findMigrationPath(chain, '0', '1', 'down'), null);
});

test('unknown vsns have no path', () => {
  assert.equal(findMigrationPath(chain, '0', '9', 'up'), null);
  assert.equal(findMigrationPath([], '0', '1', 'up'), null);
});

test('an empty path is formatted as none; a path as its vsns in order', () => {
  assert.equal(formatPath([]), 'none');
  assert.equal(formatPath([{ from: '2', to: '1', direction: 'down' }]), '2 -> 1');
});

test('only edges that start where the walk stands are taken', () => {
  // 5 -> 2 leads to the target but nothing leads to 5: there is no way from 0.
  assert.equal(findMigrationPath([{ from: '0', to: '1', hasDown: true }, { from: '5', to: '2', hasDown: true }], '0', '2', 'up'), null);
  assert.equal(findMigrationPath([{ from: '1', to: '0', hasDown: true }, { from: '2', to: '5', hasDown: true }], '0', '2', 'down'), null);
});

test('the shortest path wins over a longer one, whichever comes first in the list', () => {
  const detour: MigrationEdge[] = [
    { from: '0', to: '1', hasDown: true },
    { from: '1', to: '2', hasDown: true },
    { from: '2', to: '3', hasDown: true },
    { from: '0', to: '3', hasDown: true },
  ];
  assert.equal(formatPath(findMigrationPath(detour, '0', '3', 'up')!), '0 -> 3');
  assert.equal(formatPath(findMigrationPath(detour, '3', '0', 'down')!), '3 -> 0');
  assert.deepEqual(findMigrationPath(detour, '3', '0', 'down'), [{ from: '3', to: '0', direction: 'down' }]);
});

test('cycles end: a path through one, and none to a vsn it never reaches', () => {
  const cycle: MigrationEdge[] = [
    { from: 'a', to: 'b', hasDown: true },
    { from: 'b', to: 'c', hasDown: true },
    { from: 'c', to: 'a', hasDown: true },
    { from: 'c', to: 'd', hasDown: false },
  ];
  assert.equal(formatPath(findMigrationPath(cycle, 'b', 'd', 'up')!), 'b -> c -> d');
  assert.equal(formatPath(findMigrationPath(cycle, 'b', 'a', 'up')!), 'b -> c -> a');
  assert.equal(formatPath(findMigrationPath(cycle, 'b', 'c', 'down')!), 'b -> a -> c');
  assert.equal(findMigrationPath(cycle, 'a', 'z', 'up'), null);
  assert.equal(findMigrationPath(cycle, 'd', 'c', 'down'), null, 'c -> d has no down');
});

test('any graph: the path found is made of real edges in the right direction, and none shorter exists (property)', () => {
  const vsn = fc.constantFrom('0', '1', '2', '3', '4', '5');
  const edges = fc.array(fc.record({ from: vsn, to: vsn, hasDown: fc.boolean() }), { maxLength: 12 });
  fc.assert(
    fc.property(edges, vsn, vsn, fc.constantFrom('up' as const, 'down' as const), (graph, from, to, direction) => {
      const path = findMigrationPath(graph, from, to, direction);
      const shortest = shortestLength(graph, from, to, direction);
      if (shortest === null) return path === null;
      assert.ok(path !== null, 'a path exists but none was found');
      assert.equal(path.length, shortest, 'the path found is a shortest one');
      let at: string = from;
      for (const step of path) {
        assert.equal(step.from, at, 'each step starts where the last one ended');
        assert.equal(step.direction, direction);
        const edge = direction === 'up' ? graph.find((e) => e.from === step.from && e.to === step.to) : graph.find((e) => e.to === step.from && e.from === step.to && e.hasDown);
        assert.ok(edge, `step ${step.from} -> ${step.to} is an edge that can be walked ${direction}`);
        at = step.to;
      }
      assert.equal(at, to);
      return true;
    }),
    { numRuns: 500 },
  );
});

/** Shortest number of steps by relaxing every edge until nothing changes: independent of the BFS under test. */
function shortestLength(graph: readonly MigrationEdge[], from: string, to: string, direction: 'up' | 'down'): number | null {
  const moves = graph.flatMap((edge) => (direction === 'up' ? [[edge.from, edge.to]] : edge.hasDown ? [[edge.to, edge.from]] : []));
  const distance = new Map<string, number>([[from, 0]]);
  for (let changed = true; changed; ) {
    changed = false;
    for (const [a, b] of moves) {
      const via = distance.get(a!);
      if (via !== undefined && via + 1 < (distance.get(b!) ?? Infinity)) {
        distance.set(b!, via + 1);
        changed = true;
      }
    }
  }
  return distance.get(to) ?? null;
}
