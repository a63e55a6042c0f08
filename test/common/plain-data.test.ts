import assert from 'node:assert/strict';
import { test } from 'node:test';
import { inspect } from 'node:util';
import { findNonPlainData } from '../../kernel/common/plain-data.ts';

test('plain data passes, including the structured-clone built-ins and cycles', () => {
  const cyclic: Record<string, unknown> = { a: 1 };
  cyclic.self = cyclic;
  for (const value of [
    0,
    'x',
    null,
    undefined,
    10n,
    [1, [2, { a: 3 }]],
    { date: new Date(), re: /x/g, map: new Map([['k', { v: 1 }]]), set: new Set([1]) },
    { bytes: new Uint8Array(4), buffer: new ArrayBuffer(8), view: new DataView(new ArrayBuffer(2)), node: Buffer.from('x') },
    { error: new TypeError('kept as data') },
    Object.create(null),
    cyclic,
  ]) {
    assert.equal(findNonPlainData(value), null, inspect(value));
  }
});

test('functions, symbols, class instances and accessors are named by path', () => {
  class Cache {
    get(): number {
      return 1;
    }
  }
  const cases: Array<[unknown, string]> = [
    [{ cache: { fn: () => 1 } }, 'state.cache.fn is a function'],
    [{ list: [1, 2, Symbol('s')] }, 'state.list[2] is a symbol'],
    [{ cache: new Cache() }, 'state.cache is an instance of Cache'],
    [{ 'odd key': { when: new WeakMap() } }, 'state["odd key"].when is an instance of WeakMap'],
    [{ [Symbol('k')]: 1 }, 'state has a symbol key Symbol(k)'],
    [{ registry: new (class Registry extends Map {})() }, 'state.registry is an instance of Registry'],
    [{ byName: new Map([['alice', { hook: () => 0 }]]) }, 'state.byName.get("alice").hook is a function'],
    [{ pending: Promise.resolve(1) }, 'state.pending is an instance of Promise'],
  ];
  for (const [value, expected] of cases) assert.equal(findNonPlainData(value), expected);
});

test('deep states do not overflow the stack', () => {
  let deep: Record<string, unknown> = { leaf: () => 0 };
  for (let i = 0; i < 100_000; i++) deep = { next: deep };
  assert.match(findNonPlainData(deep) ?? '', /\.leaf is a function$/);
});
