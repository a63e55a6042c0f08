// The one definition of plain data: what structured clone (and so a snapshot, a checkpoint, a
// call's arguments and reply) keeps faithfully. `findNonPlainData` finds the first value inside
// `root` that would not arrive as it left, and names its path (`state.cache.fn is a function`).
//
// Structured clone throws on some values (functions, symbols, Proxies, WeakMaps), but it silently
// changes many more: a class instance arrives as a bag of fields, a subclass of a built-in as the
// plain built-in (a Buffer as a Uint8Array), an Error keeps only its message, stack and cause, a
// getter becomes the value it returned, a null-prototype object gains Object.prototype. Either way
// the new code gets something else than the old code had, so both kinds are refused. What is kept:
//   primitives (-0, NaN, bigints and lone surrogates included); objects whose prototype is this
//   realm's Object.prototype, with enumerable data properties and string keys only; arrays (holes
//   kept); Map, Set, Date, RegExp (lastIndex 0), ArrayBuffer, the typed arrays, DataView, boxed
//   numbers, strings, booleans and bigints, each of this realm and without extra own properties;
//   Errors of the seven standard kinds with only message, stack and cause (on Node 20, a cause
//   that leads back to its error is refused: see errorCauseCyclesKept). Shared references and
//   cycles are kept, and so is the sharing of an ArrayBuffer between views.
// Frozen, sealed and non-extensible objects are accepted and arrive as ordinary ones: freezing is
// a guard on the old copy, not data.
//
// It runs at every snapshot, inside a swap's pause, so it is built for speed: primitives are never
// pushed, and a path string is only made for the value that fails. Two things are not examined,
// because finding them would cost a string per element: named properties added to an array (the
// clone keeps them; their values are not checked) and to a typed array (the clone drops them).
// `examineArrayProperties` looks at the first kind too; it is used to explain a clone that failed.

import { types } from 'node:util';

const { getPrototypeOf, getOwnPropertyNames, getOwnPropertyDescriptor, getOwnPropertySymbols } = Object;
const { propertyIsEnumerable } = Object.prototype;
/** Object.prototype.__lookupGetter__ and __lookupSetter__: an own data property answers undefined, without allocating. */
const { __lookupGetter__: lookupGetter, __lookupSetter__: lookupSetter } = Object.prototype as unknown as Record<'__lookupGetter__' | '__lookupSetter__', (this: object, key: string) => unknown>;

const typedArrayConstructors = [
  Int8Array,
  Uint8Array,
  Uint8ClampedArray,
  Int16Array,
  Uint16Array,
  Int32Array,
  Uint32Array,
  Float32Array,
  Float64Array,
  BigInt64Array,
  BigUint64Array,
];
const typedArrayPrototypes = new Set<object>(typedArrayConstructors.map((ctor) => ctor.prototype));
/** Structured clone rebuilds an Error with one of these prototypes, chosen by its name; any other becomes a plain Error. */
const errorPrototypes = new Set<object>([Error, EvalError, RangeError, ReferenceError, SyntaxError, TypeError, URIError].map((ctor) => ctor.prototype));
const errorOwnKeysKept = new Set<string | symbol>(['message', 'stack', 'cause']);
/**
 * Whether this Node.js can copy an Error whose cause leads back to the error. Node 20's V8 writes
 * one but cannot read it back ("Unable to deserialize cloned data"), so a snapshot or checkpoint
 * of it would be lost; newer V8s read it. Found out once, by trying.
 */
const errorCauseCyclesKept = ((): boolean => {
  const probe = new Error('probe');
  Object.defineProperty(probe, 'cause', { value: { error: probe }, writable: true, configurable: true });
  try {
    structuredClone(probe);
    return true;
  } catch {
    return false;
  }
})();
const boxedPrototypes = new Set<object>([Number.prototype, String.prototype, Boolean.prototype, BigInt.prototype]);
/**
 * The built-ins that structured clone keeps, by prototype (and Node's Buffer): a user class that
 * extends one is named after the first of these up its chain, and arrives as that built-in.
 */
const keptBuiltins = new Map<object, string>([
  ...[...typedArrayConstructors, DataView, ArrayBuffer, Map, Set, Date, RegExp, Array, Number, String, Boolean, BigInt].map(
    (ctor) => [ctor.prototype, ctor.name] as [object, string],
  ),
  ...[...errorPrototypes].map((proto) => [proto, (proto as Error).name] as [object, string]),
  [Buffer.prototype, 'Buffer'],
]);

export interface PlainDataOptions {
  /**
   * Also examine the named (non-index) properties of arrays. Off by default: listing an array's
   * keys makes a string per element (a million-number array: about 130 ms instead of 10 ms).
   */
  examineArrayProperties?: boolean;
}

/** How a child hangs off its parent; turned into text only when a path is reported. */
type Step = string | number | { mapKeyOf: number } | { mapValue: unknown; index: number } | { setEntry: number };

function formatStep(path: string, step: Step): string {
  if (typeof step === 'number') return `${path}[${step}]`;
  if (typeof step === 'string') return /^[A-Za-z_$][\w$]*$/.test(step) ? `${path}.${step}` : `${path}[${JSON.stringify(step)}]`;
  if ('mapKeyOf' in step) return `${path}.<key ${step.mapKeyOf}>`;
  if ('setEntry' in step) return `${path}.<entry ${step.setEntry}>`;
  const key = step.mapValue;
  return `${path}.get(${typeof key === 'string' ? JSON.stringify(key) : `<key ${step.index}>`})`;
}

/** Returns `null` when the value is plain data, else a sentence naming the first offending path. */
export function findNonPlainData(root: unknown, rootName = 'state', options: PlainDataOptions = {}): string | null {
  // Nodes are appended and never removed, so a failing node can walk its parents for the path.
  const nodeParent: number[] = [];
  const nodeStep: Step[] = [];
  const nodeValue: object[] = [];
  const pending: number[] = [];
  const seen = new Set<object>();

  const pathOf = (node: number): string => {
    const steps: Step[] = [];
    for (let at = node; at > 0; at = nodeParent[at]!) steps.push(nodeStep[at]!);
    let path = rootName;
    for (let i = steps.length - 1; i >= 0; i--) path = formatStep(path, steps[i]!);
    return path;
  };
  /** Queues an object child, or reports a function/symbol child; primitives need nothing. */
  const visit = (value: unknown, parent: number, step: Step): string | null => {
    const type = typeof value;
    if (type === 'function' || type === 'symbol') {
      return `${formatStep(pathOf(parent), step)} is ${type === 'function' ? 'a function' : 'a symbol'}`;
    }
    if (value === null || type !== 'object' || seen.has(value as object)) return null;
    seen.add(value as object);
    nodeParent.push(parent);
    nodeStep.push(step);
    nodeValue.push(value as object);
    pending.push(nodeValue.length - 1);
    return null;
  };
  const walk: Walk = { visit, pathOf };

  const type = typeof root;
  if (type === 'function') return `${rootName} is a function`;
  if (type === 'symbol') return `${rootName} is a symbol`;
  if (root === null || type !== 'object') return null;
  seen.add(root as object);
  nodeParent.push(-1);
  nodeStep.push('');
  nodeValue.push(root as object);
  pending.push(0);

  while (pending.length > 0) {
    const node = pending.pop()!;
    const object = nodeValue[node]!;
    // First, before anything that a Proxy's traps could answer (its prototype, its keys).
    if (types.isProxy(object)) return `${pathOf(node)} is a Proxy, which structured clone cannot copy; store its target, a plain object, instead`;
    const proto = getPrototypeOf(object) as object | null;
    let problem: string | null;
    if (proto === Object.prototype) {
      problem = recordProblem(object as Record<string, unknown>, node, walk);
    } else if (proto === Array.prototype && Array.isArray(object)) {
      problem = arrayProblem(object as unknown[], node, walk, options.examineArrayProperties === true);
    } else if (proto === Map.prototype && types.isMap(object)) {
      problem = ownPropertiesProblem(object, 'a Map', node, walk) ?? mapProblem(object as Map<unknown, unknown>, node, walk);
    } else if (proto === Set.prototype && types.isSet(object)) {
      problem = ownPropertiesProblem(object, 'a Set', node, walk) ?? setProblem(object as Set<unknown>, node, walk);
    } else if (proto !== null && errorPrototypes.has(proto) && types.isNativeError(object)) {
      problem = errorProblem(object as Error, node, walk);
    } else {
      const reason = leafReason(object, proto);
      problem = reason === null ? null : `${pathOf(node)} ${reason}`;
    }
    if (problem !== null) return problem;
  }
  return null;
}

type Visit = (value: unknown, parent: number, step: Step) => string | null;

/** What the per-kind checks below need from the walk: queue a child, name a node's path. */
interface Walk {
  visit: Visit;
  pathOf(node: number): string;
}

/** An ordinary object: every own property must be an enumerable data property with a string key. */
function recordProblem(record: Record<string, unknown>, node: number, walk: Walk): string | null {
  // for-in and a getter lookup per key rather than a descriptor per key: this is the check's hot
  // loop, and allocating a descriptor for every property made it twice as slow on a busy heap.
  let enumerable = 0;
  for (const key in record) {
    enumerable++;
    const getter = lookupGetter.call(record, key) !== undefined;
    // Only a property that reads as undefined can be a setter without a getter.
    const value = getter ? undefined : record[key];
    if (getter || (value === undefined && lookupSetter.call(record, key) !== undefined)) {
      return `${walk.pathOf(node)} has ${getter ? 'a getter' : 'a setter'} '${key}', and the copy would keep only the value it gives now; store plain values and compute the rest in the handlers`;
    }
    const problem = walk.visit(value, node, key);
    if (problem !== null) return problem;
  }
  const names = getOwnPropertyNames(record);
  if (names.length !== enumerable) {
    const hidden = names.find((key) => !propertyIsEnumerable.call(record, key));
    if (hidden !== undefined) return `${walk.pathOf(node)} has a non-enumerable property '${hidden}', which the copy would drop; make it enumerable, or leave it out`;
  }
  return symbolKeyProblem(record, node, walk);
}

function symbolKeyProblem(object: object, node: number, walk: Walk): string | null {
  const symbols = getOwnPropertySymbols(object);
  if (symbols.length === 0) return null;
  return `${walk.pathOf(node)} has a symbol key ${String(symbols[0])}, which the copy would drop; use a string key`;
}

/** Holes read as undefined and need nothing: the clone keeps them as holes. */
function arrayProblem(array: unknown[], node: number, walk: Walk, examineProperties: boolean): string | null {
  for (let i = 0; i < array.length; i++) {
    const problem = walk.visit(array[i], node, i);
    if (problem !== null) return problem;
  }
  if (!examineProperties) return null;
  // Named properties, beyond the indices and length: only when asked, as they cost a string per element.
  for (const key of getOwnPropertyNames(array)) {
    if (key === 'length' || isArrayIndex(key)) continue;
    const descriptor = getOwnPropertyDescriptor(array, key)!;
    if (!('value' in descriptor)) return `${walk.pathOf(node)} has an accessor property '${key}'; store plain values instead`;
    if (!descriptor.enumerable) return `${walk.pathOf(node)} has a non-enumerable property '${key}', which the copy would drop`;
    const problem = walk.visit(descriptor.value, node, key);
    if (problem !== null) return problem;
  }
  return symbolKeyProblem(array, node, walk);
}

function isArrayIndex(key: string): boolean {
  const index = Number(key);
  return Number.isInteger(index) && index >= 0 && index < 2 ** 32 - 1 && String(index) === key;
}

function mapProblem(map: Map<unknown, unknown>, node: number, walk: Walk): string | null {
  let index = 0;
  for (const [key, entry] of map) {
    const problem = walk.visit(key, node, { mapKeyOf: index }) ?? walk.visit(entry, node, { mapValue: key, index });
    if (problem !== null) return problem;
    index++;
  }
  return null;
}

function setProblem(set: Set<unknown>, node: number, walk: Walk): string | null {
  let index = 0;
  for (const entry of set) {
    const problem = walk.visit(entry, node, { setEntry: index++ });
    if (problem !== null) return problem;
  }
  return null;
}

/** A built-in's own properties (a Map with a `.label`): structured clone copies only its contents. */
function ownPropertiesProblem(object: object, what: string, node: number, walk: Walk): string | null {
  const reason = ownKeysReason(object, what);
  return reason === null ? null : `${walk.pathOf(node)} ${reason}`;
}

/** An Error of a standard kind: structured clone keeps its message, stack and cause, nothing else. */
function errorProblem(error: Error, node: number, walk: Walk): string | null {
  const name = keptBuiltins.get(getPrototypeOf(error) as object)!;
  const kind = `${article(name)} ${name}`;
  const here = () => `${walk.pathOf(node)} is ${kind}`;
  for (const key of Reflect.ownKeys(error)) {
    if (!errorOwnKeysKept.has(key)) {
      return `${here()} with its own property ${describeKey(key)}, which the copy would drop (it keeps only message, stack and cause); keep the fields beside the error in a plain object`;
    }
  }
  const message = getOwnPropertyDescriptor(error, 'message');
  if (message !== undefined && (!('value' in message) || typeof message.value !== 'string')) {
    return `${here()} whose message is not a string value, which the copy would change; give it a string message`;
  }
  // V8 may keep `stack` as an accessor; the copy holds what it reads, so only its type matters.
  const stack: unknown = error.stack;
  if (stack !== undefined && typeof stack !== 'string') return `${here()} whose stack is not a string, which the copy would drop`;
  const cause = getOwnPropertyDescriptor(error, 'cause');
  if (cause === undefined) return null;
  if (!('value' in cause)) return `${here()} whose cause is an accessor, which the copy would drop; give it a plain cause`;
  if (!errorCauseCyclesKept && leadsBackTo(error, cause.value)) {
    // Refused whatever the order: whether V8 can read it back depends on which it meets first.
    return `${here()} whose cause leads back to the error itself, which this Node.js writes but cannot read back; break the cycle (keep the error's message instead of the error)`;
  }
  return walk.visit(cause.value, node, 'cause');
}

/** Whether `target` can be reached from `start` through the kinds of children the walk follows. */
function leadsBackTo(target: object, start: unknown): boolean {
  const pending: unknown[] = [start];
  const seen = new Set<object>();
  while (pending.length > 0) {
    const value = pending.pop();
    if (value === target) return true;
    if (value === null || typeof value !== 'object' || seen.has(value) || types.isProxy(value)) continue;
    seen.add(value);
    if (types.isMap(value)) for (const [key, entry] of value as Map<unknown, unknown>) pending.push(key, entry);
    else if (types.isSet(value)) for (const entry of value as Set<unknown>) pending.push(entry);
    else if (!ArrayBuffer.isView(value)) {
      // Own data properties only: a getter is refused by the walk, and not run here.
      for (const key of Reflect.ownKeys(value)) {
        const descriptor = getOwnPropertyDescriptor(value, key);
        if (descriptor !== undefined && 'value' in descriptor) pending.push(descriptor.value);
      }
    }
  }
  return false;
}

/** Objects that are neither records, arrays, Maps, Sets nor Errors: null when a kept built-in, else why not. */
function leafReason(object: object, proto: object | null): string | null {
  if (proto === null) {
    return 'is an object with a null prototype (Object.create(null)), which would arrive with Object.prototype (so `constructor` and `toString` appear on it); use a Map, or an ordinary {} object';
  }
  if (typedArrayPrototypes.has(proto) && types.isTypedArray(object)) {
    return viewBufferProblem((object as Uint8Array).buffer, proto);
  }
  if (proto === DataView.prototype && types.isDataView(object)) {
    return viewBufferProblem((object as DataView).buffer, proto) ?? ownKeysReason(object, 'a DataView');
  }
  if (proto === ArrayBuffer.prototype && types.isArrayBuffer(object)) {
    if (isDetached(object as ArrayBuffer)) return 'is a detached ArrayBuffer (it was transferred to another thread), which cannot be copied; store a copy made before the transfer';
    return ownKeysReason(object, 'an ArrayBuffer');
  }
  if (proto === Date.prototype && types.isDate(object)) return ownKeysReason(object, 'a Date');
  if (proto === RegExp.prototype && types.isRegExp(object)) {
    const regexp = object as RegExp;
    if (regexp.lastIndex !== 0) return `is a RegExp whose lastIndex is ${regexp.lastIndex}, and the copy would start again from 0; reset lastIndex to 0 before storing it`;
    const extra = Reflect.ownKeys(regexp).find((key) => key !== 'lastIndex');
    return extra === undefined ? null : `is a RegExp with its own property ${describeKey(extra)}, which the copy would drop`;
  }
  if (boxedPrototypes.has(proto) && types.isBoxedPrimitive(object)) {
    // A boxed string's characters are its own index properties; anything past them is extra.
    const keys = Reflect.ownKeys(object);
    const expected = proto === String.prototype ? (object as string).length + 1 : 0;
    return keys.length === expected ? null : 'is a boxed primitive with properties of its own, which the copy would drop';
  }
  return notKeptDescription(object, proto);
}

function ownKeysReason(object: object, what: string): string | null {
  const keys = Reflect.ownKeys(object);
  return keys.length === 0 ? null : `is ${what} with its own property ${describeKey(keys[0]!)}, which the copy would drop; keep it beside it in a plain object`;
}

function viewBufferProblem(buffer: ArrayBufferLike, proto: object): string | null {
  const kind = keptBuiltins.get(proto)!;
  if (types.isSharedArrayBuffer(buffer)) {
    return `is ${article(kind)} ${kind} over a SharedArrayBuffer: memory shared with other threads cannot be saved or moved with the state; store a copy (${kind}.from(view))`;
  }
  if (isDetached(buffer as ArrayBuffer)) return `is ${article(kind)} ${kind} whose ArrayBuffer was transferred away (detached), which cannot be copied`;
  return null;
}

/** A detached ArrayBuffer reads as empty; only an empty one needs the (throwing) test. */
function isDetached(buffer: ArrayBuffer): boolean {
  if (buffer.byteLength > 0) return false;
  try {
    buffer.slice(0, 0);
    return false;
  } catch {
    return true;
  }
}

/** Why an object that no rule above keeps is refused, in words that say what to store instead. */
function notKeptDescription(object: object, proto: object): string {
  if (types.isSharedArrayBuffer(object)) {
    return 'is a SharedArrayBuffer: memory shared with other threads cannot be saved or moved with the state; copy it into an ArrayBuffer';
  }
  if (proto === Buffer.prototype) {
    return "is a Node Buffer, which would arrive as a plain Uint8Array without Buffer's methods; store a Uint8Array (new Uint8Array(buffer) copies one) and wrap it with Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length) where Buffer's methods are needed";
  }
  if (types.isWeakMap(object) || types.isWeakSet(object) || object instanceof WeakRef || object instanceof FinalizationRegistry) {
    return `is a ${constructorName(proto) ?? 'weak reference'}, whose contents cannot be copied; keep strong references in a Map or Set, or leave it out of the state`;
  }
  if (types.isPromise(object)) return 'is a Promise, which cannot be copied; await it in the handler and store the value it gives';
  if (types.isSymbolObject(object)) return 'is a boxed symbol, which cannot be copied';
  if (proto === AggregateError.prototype) return 'is an AggregateError, which would arrive as a plain Error without its errors; store the errors in an array';
  const name = constructorName(proto);
  if (isFromAnotherRealm(proto)) {
    // Made in a vm context: the copy would be rebuilt from this realm's built-ins instead.
    return `is ${name === undefined ? 'an object' : `${article(name)} ${name}`} from another realm (a vm context), which would arrive as this realm's; copy it in this realm first (structuredClone(value))`;
  }
  const builtin = builtinAncestor(proto);
  if (builtin !== undefined && builtin.proto === proto) {
    return `has ${builtin.name}'s prototype but is not ${article(builtin.name)} ${builtin.name} (Object.create(${builtin.name}.prototype)), which would arrive as a plain object`;
  }
  const shown = name ?? 'an anonymous class';
  if (builtin !== undefined) {
    const arrives = builtin.name === 'Buffer' ? 'Uint8Array' : builtin.name;
    return `is an instance of ${shown}, a subclass of ${builtin.name}: the copy would arrive as a plain ${arrives}, without the subclass's methods and fields; store the ${arrives} itself and rebuild the rest in the handlers`;
  }
  return `is an instance of ${shown}: the copy would arrive as a plain object, without its class and methods; store plain fields and rebuild the instance in the handlers`;
}

function constructorName(proto: object): string | undefined {
  const name = (proto as { constructor?: { name?: unknown } }).constructor?.name;
  return typeof name === 'string' && name !== '' ? name : undefined;
}

/** A chain that ends at an Object.prototype other than this realm's: made in a vm context. */
function isFromAnotherRealm(proto: object): boolean {
  let root = proto;
  for (let at = getPrototypeOf(proto) as object | null; at !== null; at = getPrototypeOf(at) as object | null) root = at;
  return root !== Object.prototype && constructorName(root) === 'Object';
}

function builtinAncestor(proto: object): { proto: object; name: string } | undefined {
  for (let at: object | null = proto; at !== null && at !== Object.prototype; at = getPrototypeOf(at) as object | null) {
    const name = keptBuiltins.get(at);
    if (name !== undefined) return { proto: at, name };
  }
  return undefined;
}

function describeKey(key: string | symbol): string {
  return typeof key === 'string' ? `'${key}'` : String(key);
}

function article(word: string): string {
  return /^[AEIOU]/.test(word) ? 'an' : 'a';
}

/** Why `value` could not be posted: the offending path when the checker finds one, else the clone error. */
export function explainCloneFailure(value: unknown, rootName: string, error: unknown): string {
  return findNonPlainData(value, rootName, { examineArrayProperties: true }) ?? (error instanceof Error ? error.message : String(error));
}
