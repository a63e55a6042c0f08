// fast-check arbitraries for the state tests: random plain states, as the plain-data rule defines
// them (kernel/common/plain-data.ts), and random places to bury a refused value in one.
//
// A plain state is generated as a list of node specs whose children refer to other nodes by
// number, then built: so one object can be reached from several places (shared references),
// from below itself (cycles), and several typed arrays and DataViews can sit on one ArrayBuffer.

import fc from 'fast-check';
import { findNonPlainData } from '../../kernel/common/plain-data.ts';
import type { PathStep } from '../fixtures/services/holder-common.ts';

const viewTypes = [Int8Array, Uint8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array, Uint32Array, Float32Array, Float64Array, BigInt64Array, BigUint64Array, DataView] as const;
const errorTypes = [Error, EvalError, RangeError, ReferenceError, SyntaxError, TypeError, URIError] as const;
const regexps = [/a+b/g, /x/iu, /(?<digit>\d)\1/s, /^$/m, /[\ud800-\udfff]/y] as const;

/** A code point of any kind, or half of a surrogate pair alone (which structured clone must keep). */
const stringUnit = fc.oneof(
  fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }),
  fc.integer({ min: 0xd800, max: 0xdfff }).map((code) => String.fromCharCode(code)),
);
export const anyString = fc.string({ unit: stringUnit, maxLength: 8 });

export const primitive: fc.Arbitrary<unknown> = fc.oneof(
  fc.double(), // -0, NaN and the infinities included
  fc.integer(),
  fc.bigInt(),
  anyString,
  fc.boolean(),
  fc.constantFrom(null, undefined),
);

/** Object keys: any string, and the ones that are easy to get wrong. */
const objectKey = fc.oneof(anyString, fc.constantFrom('__proto__', 'constructor', 'toString', 'length', '0', '7', '-0', 'a b'));

type Ref = { leaf: unknown } | { node: number };
const ref: fc.Arbitrary<Ref> = fc.oneof({ arbitrary: primitive.map((leaf) => ({ leaf })), weight: 2 }, { arbitrary: fc.nat().map((node) => ({ node })), weight: 3 });

type NodeSpec =
  | { kind: 'object'; entries: Array<[string, Ref]> }
  | { kind: 'array'; length: number; slots: Array<[number, Ref]> }
  | { kind: 'map'; entries: Array<[Ref, Ref]> }
  | { kind: 'set'; entries: Ref[] }
  | { kind: 'date'; time: number }
  | { kind: 'regexp'; which: number }
  | { kind: 'error'; type: number; message: string; cause: Ref | null }
  | { kind: 'boxed'; value: number | string | boolean | bigint }
  | { kind: 'view'; type: number; buffer: number; offset: number; length: number }
  | { kind: 'buffer'; buffer: number };

const nodeSpec: fc.Arbitrary<NodeSpec> = fc.oneof(
  { arbitrary: fc.record({ kind: fc.constant('object' as const), entries: fc.array(fc.tuple(objectKey, ref), { maxLength: 5 }) }), weight: 4 },
  {
    arbitrary: fc.record({ kind: fc.constant('array' as const), length: fc.nat(12), slots: fc.array(fc.tuple(fc.nat(11), ref), { maxLength: 8 }) }),
    weight: 3,
  },
  { arbitrary: fc.record({ kind: fc.constant('map' as const), entries: fc.array(fc.tuple(ref, ref), { maxLength: 4 }) }), weight: 2 },
  { arbitrary: fc.record({ kind: fc.constant('set' as const), entries: fc.array(ref, { maxLength: 4 }) }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant('date' as const), time: fc.oneof(fc.integer({ min: -8.64e15, max: 8.64e15 }), fc.constant(Number.NaN)) }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant('regexp' as const), which: fc.nat(regexps.length - 1) }), weight: 1 },
  {
    arbitrary: fc.record({ kind: fc.constant('error' as const), type: fc.nat(errorTypes.length - 1), message: anyString, cause: fc.option(ref) }),
    weight: 1,
  },
  { arbitrary: fc.record({ kind: fc.constant('boxed' as const), value: fc.oneof(fc.double(), anyString, fc.boolean(), fc.bigInt()) }), weight: 1 },
  {
    arbitrary: fc.record({ kind: fc.constant('view' as const), type: fc.nat(viewTypes.length - 1), buffer: fc.nat(), offset: fc.nat(), length: fc.nat() }),
    weight: 3,
  },
  { arbitrary: fc.record({ kind: fc.constant('buffer' as const), buffer: fc.nat() }), weight: 1 },
);

export interface PlainGraphSpec {
  nodes: NodeSpec[];
  buffers: Uint8Array[];
  /** When there are no nodes, the state is this primitive. */
  leaf: unknown;
}

export const plainGraphSpec: fc.Arbitrary<PlainGraphSpec> = fc.record({
  nodes: fc.array(nodeSpec, { maxLength: 24 }),
  buffers: fc.array(fc.uint8Array({ maxLength: 48 }), { minLength: 1, maxLength: 3 }),
  leaf: primitive,
});

/** Builds the state a spec describes; every node is reachable from the root or not used at all. */
export function buildPlainGraph(spec: PlainGraphSpec): unknown {
  if (spec.nodes.length === 0) return spec.leaf;
  const buffers = spec.buffers.map((bytes) => {
    const buffer = new ArrayBuffer(bytes.byteLength);
    new Uint8Array(buffer).set(bytes);
    return buffer;
  });
  const nodes: unknown[] = spec.nodes.map((node) => {
    switch (node.kind) {
      case 'object':
        return {};
      case 'array':
        return new Array(node.length);
      case 'map':
        return new Map();
      case 'set':
        return new Set();
      case 'date':
        return new Date(node.time);
      case 'regexp': {
        const pattern = regexps[node.which]!;
        return new RegExp(pattern.source, pattern.flags);
      }
      case 'error':
        return new errorTypes[node.type]!(node.message);
      case 'boxed':
        return Object(node.value) as object;
      case 'view':
        return makeView(node, buffers);
      case 'buffer':
        return buffers[node.buffer % buffers.length];
    }
  });
  const resolve = (r: Ref): unknown => ('leaf' in r ? r.leaf : nodes[r.node % nodes.length]);
  spec.nodes.forEach((node, index) => {
    const built = nodes[index];
    if (node.kind === 'object') {
      // defineProperty, not assignment: a '__proto__' key must become an own key, as JSON.parse makes it.
      for (const [key, child] of node.entries) Object.defineProperty(built, key, { value: resolve(child), enumerable: true, writable: true, configurable: true });
    } else if (node.kind === 'array') {
      const array = built as unknown[];
      for (const [slot, child] of node.slots) if (slot < array.length) array[slot] = resolve(child);
    } else if (node.kind === 'map') {
      for (const [key, value] of node.entries) (built as Map<unknown, unknown>).set(resolve(key), resolve(value));
    } else if (node.kind === 'set') {
      for (const entry of node.entries) (built as Set<unknown>).add(resolve(entry));
    } else if (node.kind === 'error' && node.cause !== null) {
      Object.defineProperty(built, 'cause', { value: resolve(node.cause), enumerable: false, writable: true, configurable: true });
    }
  });
  return nodes[0];
}

function makeView(node: Extract<NodeSpec, { kind: 'view' }>, buffers: ArrayBuffer[]): ArrayBufferView {
  const buffer = buffers[node.buffer % buffers.length]!;
  const type = viewTypes[node.type]!;
  const View = type as new (buffer: ArrayBuffer, byteOffset: number, length: number) => ArrayBufferView;
  const size = 'BYTES_PER_ELEMENT' in type ? type.BYTES_PER_ELEMENT : 1;
  const slots = Math.floor(buffer.byteLength / size);
  const first = node.offset % (slots + 1);
  const count = node.length % (slots - first + 1);
  return new View(buffer, first * size, count);
}

/**
 * A random state built from the kinds the rule keeps. Nearly all are plain; the rule refuses the
 * few whose Error cause leads back to the error on a Node.js that cannot read that back.
 */
export const builtState: fc.Arbitrary<unknown> = plainGraphSpec.map(buildPlainGraph);

/** A random plain state: one the rule accepts. */
export const plainState: fc.Arbitrary<unknown> = builtState.filter((state) => findNonPlainData(state) === null);

// ---------------------------------------------------------------------------------------------
// Trees to bury a refused value in: no shared references, so the path to each slot is unique and
// the check must name exactly that one.

export const plainTree: fc.Arbitrary<unknown> = fc.letrec<{ tree: unknown }>((tie) => ({
  tree: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    primitive,
    fc.array(fc.tuple(objectKey, tie('tree')), { maxLength: 4 }).map((entries) => {
      const record: Record<string, unknown> = {};
      for (const [key, value] of entries) Object.defineProperty(record, key, { value, enumerable: true, writable: true, configurable: true });
      return record;
    }),
    fc.array(tie('tree'), { maxLength: 4 }),
    fc.array(fc.tuple(anyString, tie('tree')), { maxLength: 3 }).map((entries) => new Map(entries)),
  ),
})).tree;

/** Every slot of a tree (the root included), as paths. */
export function slotsOf(tree: unknown, path: PathStep[] = []): PathStep[][] {
  const slots: PathStep[][] = [path];
  if (tree instanceof Map) {
    for (const [key, value] of tree as Map<string, unknown>) slots.push(...slotsOf(value, [...path, { mapKey: key }]));
  } else if (Array.isArray(tree)) {
    tree.forEach((value, index) => slots.push(...slotsOf(value, [...path, { index }])));
  } else if (tree !== null && typeof tree === 'object') {
    for (const key of Object.keys(tree)) slots.push(...slotsOf((tree as Record<string, unknown>)[key], [...path, { key }]));
  }
  return slots;
}

/** A tree and one of its slots. */
export const treeWithSlot: fc.Arbitrary<{ tree: unknown; path: PathStep[] }> = plainTree.chain((tree) =>
  fc.constantFrom(...slotsOf(tree)).map((path) => ({ tree, path })),
);

/** How the plain-data check writes a path, written out again here so the two can disagree. */
export function formatPath(root: string, path: PathStep[]): string {
  let text = root;
  for (const step of path) {
    if ('index' in step) text += `[${step.index}]`;
    else if ('mapKey' in step) text += `.get(${JSON.stringify(step.mapKey)})`;
    else text += /^[A-Za-z_$][\w$]*$/.test(step.key) ? `.${step.key}` : `[${JSON.stringify(step.key)}]`;
  }
  return text;
}
