// The plain-data rule (kernel/common/plain-data.ts): what it accepts, what it refuses and with
// which path, and that it says exactly what structured clone and the state codec keep faithfully
// on this Node.js: every accepted value comes back the same through both, every refused one does
// not come back the same (or cannot be sent at all) through one of them.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { inspect } from 'node:util';
import vm from 'node:vm';
import { explainCloneFailure, findNonPlainData } from '../../kernel/common/plain-data.ts';
import { decodeState, encodeState } from '../../kernel/common/state-codec.ts';
import { tripDifference } from './same-graph.ts';

class HexBytes extends Uint8Array {
  hex(): string {
    return Buffer.from(this).toString('hex');
  }
}
class LedgerError extends Error {
  code = 'E_LEDGER';
}
class Cache {
  get(): number {
    return 1;
  }
}
class Stack<T> extends Array<T> {}

function withProperty<T extends object>(value: T, key: string, property: PropertyDescriptor): T {
  Object.defineProperty(value, key, property);
  return value;
}

function accepted(): Array<[string, unknown]> {
  const cyclic: Record<string, unknown> = { a: 1 };
  cyclic.self = cyclic;
  const shared = new ArrayBuffer(16);
  const extraNamed = Object.assign([1, 2], { total: 3 });
  return [
    ['primitives', { zero: -0, nan: Number.NaN, inf: -Infinity, big: -(2n ** 70n), lone: '\ud800x\udfff', none: undefined, nil: null, yes: true }],
    ['nested arrays and objects', [1, [2, { a: 3 }], 'x']],
    ['sparse array', [1, , 3, , ,]],
    ['array with a named property (the clone keeps it)', extraNamed],
    ['Map, Set, Date, RegExp', { date: new Date(), invalid: new Date(Number.NaN), re: /x/gi, map: new Map<unknown, unknown>([['k', { v: 1 }], [{ o: 1 }, 2]]), set: new Set([1, 'a']) }],
    ['typed arrays of every kind and a DataView', {
      i8: new Int8Array([-1]), u8: new Uint8Array([1]), c8: new Uint8ClampedArray([2]), i16: new Int16Array([-3]), u16: new Uint16Array([3]),
      i32: new Int32Array([-4]), u32: new Uint32Array([4]), f32: new Float32Array([0.5]), f64: new Float64Array([-0]),
      b64: new BigInt64Array([-5n]), ub64: new BigUint64Array([5n]), view: new DataView(new ArrayBuffer(2)), buffer: new ArrayBuffer(3),
    }],
    ['views sharing one ArrayBuffer', { a: new Uint8Array(shared, 1, 3), b: new Float64Array(shared, 8, 1), d: new DataView(shared, 2, 4), whole: shared }],
    ['resizable ArrayBuffer', new (ArrayBuffer as unknown as new (length: number, options: { maxByteLength: number }) => ArrayBuffer)(4, { maxByteLength: 8 })],
    ['standard Errors with a cause', { e: new Error('x', { cause: { why: 1 } }), t: new TypeError('t'), r: new RangeError('r'), u: new URIError('u') }],
    ['an Error without a message of its own', { e: new Error() }],
    ['boxed primitives', [new Number(1), new String('ab'), new Boolean(false), Object(3n)]],
    ['an own __proto__ key (from JSON.parse)', JSON.parse('{"__proto__": {"x": 1}}')],
    ['frozen and sealed objects (they arrive unfrozen)', { f: Object.freeze({ a: 1 }), s: Object.seal([1]) }],
    ['shared references and a cycle', { one: cyclic, again: cyclic }],
  ];
}

const refused: Array<[string, () => unknown, RegExp]> = [
  // Item 9 of issue 12: subclasses of built-ins used to pass, and arrived as the plain built-in.
  ['a subclass of Uint8Array', () => ({ bytes: new HexBytes(5) }), /^state\.bytes is an instance of HexBytes, a subclass of Uint8Array/],
  ['a subclass of Error', () => ({ failure: new LedgerError('x') }), /^state\.failure is an instance of LedgerError, a subclass of Error/],
  ['a subclass of Array', () => ({ list: [new Stack<number>()] }), /^state\.list\[0\] is an instance of Stack, a subclass of Array/],
  ['a subclass of Map', () => ({ registry: new (class Registry extends Map {})() }), /^state\.registry is an instance of Registry, a subclass of Map/],
  ['a Node Buffer', () => ({ raw: Buffer.from('hi') }), /^state\.raw is a Node Buffer.*store a Uint8Array/],
  // Item 10: these used to pass the check and then break v8.serialize.
  ['a SharedArrayBuffer', () => ({ deep: { memory: new SharedArrayBuffer(8) } }), /^state\.deep\.memory is a SharedArrayBuffer/],
  ['a view over a SharedArrayBuffer', () => ({ signal: new Int32Array(new SharedArrayBuffer(4)) }), /^state\.signal is an Int32Array over a SharedArrayBuffer/],
  ['a Proxy', () => ({ items: [1, new Proxy({}, {})] }), /^state\.items\[1\] is a Proxy/],
  ['a Proxy of an array', () => ({ items: new Proxy([1], {}) }), /^state\.items is a Proxy/],
  ['an Error with a field of its own', () => ({ e: Object.assign(new Error('x'), { code: 'E' }) }), /^state\.e is an Error with its own property 'code'/],
  ['an Error with its own name', () => ({ e: Object.assign(new Error('x'), { name: 'TypeError' }) }), /^state\.e is an Error with its own property 'name'/],
  ['an Error whose message is not a string', () => ({ e: Object.assign(new Error('x'), { message: 5 }) }), /^state\.e is an Error whose message is not a string/],
  ['an AggregateError', () => ({ e: new AggregateError([new Error('a')], 'x') }), /^state\.e is an AggregateError/],
  ['something non-plain in an Error cause', () => ({ e: new Error('x', { cause: { at: new Cache() } }) }), /^state\.e\.cause\.at is an instance of Cache/],
  ['a class instance', () => ({ cache: new Cache() }), /^state\.cache is an instance of Cache: the copy would arrive as a plain object/],
  ['a function', () => ({ cache: { fn: () => 1 } }), /^state\.cache\.fn is a function$/],
  ['a symbol', () => ({ list: [1, 2, Symbol('s')] }), /^state\.list\[2\] is a symbol$/],
  ['a symbol key', () => ({ [Symbol('k')]: 1 }), /^state has a symbol key Symbol\(k\)/],
  // The check reads prototypes, never Object.prototype.toString, so a borrowed tag changes nothing.
  ['an object tagged as a Map', () => ({ fake: { [Symbol.toStringTag]: 'Map' } }), /^state\.fake has a symbol key Symbol\(Symbol\.toStringTag\)/],
  ['a class instance tagged as Object', () => ({ fake: new (class Tagged { get [Symbol.toStringTag]() { return 'Object'; } })() }), /^state\.fake is an instance of Tagged/],
  ['a getter', () => ({ totals: { get sum() { return 1; } } }), /^state\.totals has a getter 'sum'/],
  ['a setter', () => ({ totals: withProperty({}, 'sum', { set() {}, enumerable: true }) }), /^state\.totals has a setter 'sum'/],
  ['a non-enumerable property', () => ({ o: withProperty({ a: 1 }, 'hidden', { value: 1 }) }), /^state\.o has a non-enumerable property 'hidden'/],
  ['an object with a null prototype', () => ({ index: Object.assign(Object.create(null) as object, { a: 1 }) }), /^state\.index is an object with a null prototype/],
  ['an object from another realm', () => ({ row: vm.runInNewContext('({ a: 1 })') }), /^state\.row is an Object from another realm/],
  ['a Map from another realm', () => ({ m: vm.runInNewContext('new Map()') }), /^state\.m is a Map from another realm/],
  ['an object with a built-in prototype that is not one', () => ({ m: Object.create(Map.prototype) }), /^state\.m has Map's prototype but is not a Map/],
  ['a Map with a property of its own', () => ({ m: Object.assign(new Map(), { label: 'x' }) }), /^state\.m is a Map with its own property 'label'/],
  ['a Date with a property of its own', () => ({ d: Object.assign(new Date(), { tz: 'x' }) }), /^state\.d is a Date with its own property 'tz'/],
  ['a RegExp part way through a string', () => ({ re: Object.assign(/a/g, { lastIndex: 2 }) }), /^state\.re is a RegExp whose lastIndex is 2/],
  ['a boxed primitive with a property', () => ({ n: Object.assign(new Number(1), { unit: 'ms' }) }), /^state\.n is a boxed primitive with properties of its own/],
  ['a boxed symbol', () => ({ s: Object(Symbol('s')) }), /^state\.s is a boxed symbol/],
  ['a WeakMap', () => ({ when: new WeakMap() }), /^state\.when is a WeakMap/],
  ['a WeakSet', () => ({ seen: new WeakSet() }), /^state\.seen is a WeakSet/],
  ['a WeakRef', () => ({ ref: new WeakRef({}) }), /^state\.ref is a WeakRef/],
  ['a Promise', () => ({ pending: Promise.resolve(1) }), /^state\.pending is a Promise/],
  ['a detached ArrayBuffer', () => ({ gone: detached() }), /^state\.gone is a detached ArrayBuffer/],
  ['something non-plain in a Map value', () => ({ byName: new Map([['alice', { hook: () => 0 }]]) }), /^state\.byName\.get\("alice"\)\.hook is a function$/],
  ['something non-plain as a Map key', () => ({ byKey: new Map([[new Cache(), 1]]) }), /^state\.byKey\.<key 0> is an instance of Cache/],
  ['something non-plain in a Set', () => ({ tags: new Set([1, new Cache()]) }), /^state\.tags\.<entry 1> is an instance of Cache/],
  ['an Error whose cause leads back to it', () => ({ e: selfCaused() }), /^state\.e is an Error whose cause leads back to the error itself/],
  ['an odd key on the path', () => ({ 'odd key': { when: new WeakMap() } }), /^state\["odd key"\]\.when is a WeakMap/],
  // Buffer's constructor never returns a subclass's instance: the prototype is set as a subclass's would be.
  ['a subclass of Buffer', () => ({ b: Object.setPrototypeOf(Buffer.alloc(2), class Bytes extends Buffer {}.prototype) as Buffer }), /^state\.b is an instance of Bytes, a subclass of Buffer: the copy would arrive as a plain Uint8Array/],
  ['a subclass of Set', () => ({ tags: new (class Tags extends Set {})() }), /^state\.tags is an instance of Tags, a subclass of Set/],
  ["an object with Set's prototype that is not one", () => ({ s: Object.create(Set.prototype) }), /^state\.s has Set's prototype but is not a Set/],
  ['a Set with a property of its own', () => ({ s: Object.assign(new Set([1]), { label: 'x' }) }), /^state\.s is a Set with its own property 'label'/],
  ['a Map with a symbol property of its own', () => ({ m: Object.assign(new Map(), { [Symbol('tag')]: 1 }) }), /^state\.m is a Map with its own property Symbol\(tag\)/],
  ['a RegExp with a property of its own', () => ({ re: Object.assign(/a/, { note: 'x' }) }), /^state\.re is a RegExp with its own property 'note'/],
  ['a RangeError with a field of its own', () => ({ e: Object.assign(new RangeError('x'), { code: 'E' }) }), /^state\.e is a RangeError with its own property 'code'/],
  ['an Error whose stack is not a string', () => ({ e: Object.assign(new Error('x'), { stack: 5 }) }), /^state\.e is an Error whose stack is not a string/],
  ['an Error whose cause is a getter', () => ({ e: withProperty(new Error('x'), 'cause', { get: () => 'why', configurable: true }) }), /^state\.e is an Error whose cause is an accessor/],
  ['an Error whose cause leads back to it through a Map', () => ({ e: selfCaused((error) => new Map([['by', error]])) }), /^state\.e is an Error whose cause leads back to the error itself/],
  ['an Error whose cause leads back to it through a Set', () => ({ e: selfCaused((error) => ({ seen: new Set([1, error]) })) }), /^state\.e is an Error whose cause leads back to the error itself/],
  ['an Error whose cause leads back to it as a Map key', () => ({ e: selfCaused((error) => new Map([[error, 1]])) }), /^state\.e is an Error whose cause leads back to the error itself/],
  ['a typed array whose buffer was transferred away', () => ({ bytes: detachedView() }), /^state\.bytes is an? Uint8Array whose ArrayBuffer was transferred away/],
  ['a FinalizationRegistry', () => ({ cleanup: new FinalizationRegistry(() => undefined) }), /^state\.cleanup is a FinalizationRegistry/],
  ['an instance of an anonymous class', () => ({ o: new (class {})() }), /^state\.o is an instance of an anonymous class: /],
  ['an object whose prototype has a null prototype', () => ({ o: Object.create(Object.create(null) as object) as object }), /^state\.o is an instance of an anonymous class: /],
  ['an instance of an anonymous class from another realm', () => ({ o: vm.runInNewContext('new (class {})()') }), /^state\.o is an object from another realm/],
  ['something non-plain in a Map value under a key that is not a string', () => ({ m: new Map<unknown, unknown>([['a', 1], [2, { fn: () => 0 }]]) }), /^state\.m\.get\(<key 1>\)\.fn is a function$/],
  ['something non-plain as the second Map key', () => ({ m: new Map<unknown, unknown>([[1, 1], [new Cache(), 2]]) }), /^state\.m\.<key 1> is an instance of Cache/],
];

/** Node 20 writes this one but cannot read it back; the rule refuses it only where that holds. */
function selfCaused(cause: (error: Error) => unknown = (error) => ({ again: error })): Error {
  const error = new Error('loop');
  Object.defineProperty(error, 'cause', { value: cause(error), writable: true, configurable: true });
  return error;
}

function detachedView(): Uint8Array {
  const view = new Uint8Array(8);
  structuredClone(view.buffer, { transfer: [view.buffer] });
  return view;
}

function detached(): ArrayBuffer {
  const buffer = new ArrayBuffer(8);
  structuredClone(buffer, { transfer: [buffer] });
  return buffer;
}

const throughCodec = (value: unknown) => decodeState(encodeState(value));

test('plain data passes, and comes back the same through structured clone and the state codec', () => {
  for (const [name, value] of accepted()) {
    assert.equal(findNonPlainData(value), null, `${name}: ${inspect(value)}`);
    assert.equal(tripDifference(value, structuredClone), null, `${name} through structuredClone`);
    assert.equal(tripDifference(value, throughCodec), null, `${name} through the state codec`);
  }
});

test('what is refused is named by its path, and would not come back the same through structured clone or the state codec', () => {
  for (const [name, make, expected] of refused) {
    const value = make();
    const problem = findNonPlainData(value);
    assert.match(problem ?? 'accepted', expected, name);
    const viaClone = tripDifference(value, structuredClone);
    const viaCodec = tripDifference(value, throughCodec);
    assert.ok(viaClone !== null || viaCodec !== null, `${name} is refused, but both trips keep it faithfully`);
  }
});

test('the root itself, and other root names', () => {
  assert.equal(findNonPlainData(() => 1), 'state is a function');
  assert.equal(findNonPlainData(Symbol('s'), 'reply'), 'reply is a symbol');
  assert.match(findNonPlainData(new Cache(), 'reply') ?? '', /^reply is an instance of Cache/);
  assert.match(findNonPlainData([Buffer.alloc(1)], 'args') ?? '', /^args\[0\] is a Node Buffer/);
  assert.equal(findNonPlainData(5), null);
});

test('an array with non-plain named properties: not examined by the fast check, named when a failure is explained', () => {
  const list = Object.assign([1, 2], { format: () => 'x' });
  assert.equal(findNonPlainData({ list }), null, 'the fast check looks at indices only');
  assert.equal(findNonPlainData({ list }, 'state', { examineArrayProperties: true }), 'state.list.format is a function');
  assert.equal(explainCloneFailure({ list }, 'args', new Error('could not be cloned')), 'args.list.format is a function');
  // Keys that read as numbers but are not array indices are named properties, and examined.
  for (const key of ['-1', '1.5', '01', '4294967295']) {
    const numeric = Object.assign([1, 2], { [key]: () => 'x' });
    assert.equal(findNonPlainData({ numeric }, 'state', { examineArrayProperties: true }), `state.numeric[${JSON.stringify(key)}] is a function`, key);
  }
  const accessor = withProperty([1], 'total', { get: () => 1, enumerable: true });
  assert.match(findNonPlainData({ accessor }, 'state', { examineArrayProperties: true }) ?? '', /^state\.accessor has an accessor property 'total'/);
  const hidden = withProperty([1], 'total', { value: 1 });
  assert.match(findNonPlainData({ hidden }, 'state', { examineArrayProperties: true }) ?? '', /^state\.hidden has a non-enumerable property 'total'/);
  // The named properties of a typed array are dropped by the clone and not examined (a string per
  // element would be too dear): the documented limit of the rule.
  assert.equal(findNonPlainData({ bytes: Object.assign(new Uint8Array(2), { label: 'x' }) }), null);
});

test('the check does not run a Proxy trap', () => {
  let trapped = 0;
  const handler: ProxyHandler<object> = new Proxy({}, { get: () => () => { trapped++; return undefined; } });
  assert.match(findNonPlainData({ p: new Proxy({}, handler) }) ?? '', /is a Proxy/);
  assert.equal(trapped, 0);
});

test('deep states do not overflow the stack', () => {
  let deep: Record<string, unknown> = { leaf: () => 0 };
  for (let i = 0; i < 100_000; i++) deep = { next: deep };
  assert.match(findNonPlainData(deep) ?? '', /\.leaf is a function$/);
});
