import assert from 'node:assert/strict';
import { test } from 'node:test';
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
