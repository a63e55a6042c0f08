// Compares two object graphs the way a faithful copy must match its original: same shapes and
// values (-0, NaN, holes and lone surrogates included), same prototypes, same property kinds, and
// the same sharing. An object reached twice in the original must be one object reached twice in
// the copy, and views over one ArrayBuffer must share one ArrayBuffer in the copy, at the same
// offsets. node:assert's deepStrictEqual checks none of the sharing, so the tests use this.
//
// The one thing it does not compare is extensibility: a frozen object arrives unfrozen, and the
// plain-data rule accepts that (freezing guards the original; it is not data).

type Difference = string | null;

/** Null when `copy` is a faithful copy of `original`, else the first difference and where. */
export function graphDifference(copy: unknown, original: unknown, rootName = 'state'): Difference {
  const copyOf = new Map<object, object>();
  const originalOf = new Map<object, object>();

  const compare = (a: unknown, b: unknown, path: string): Difference => {
    if (typeof a !== typeof b) return `${path}: ${typeof a} instead of ${typeof b}`;
    if (b === null || typeof b !== 'object') return Object.is(a, b) ? null : `${path}: ${show(a)} instead of ${show(b)}`;
    if (a === null) return `${path}: null instead of an object`;
    const x = a as object;
    const y = b as object;
    const mapped = copyOf.get(y);
    if (mapped !== undefined) return mapped === x ? null : `${path}: a separate object where the original shares one reached earlier`;
    if (originalOf.has(x)) return `${path}: one object where the original has two different ones`;
    copyOf.set(y, x);
    originalOf.set(x, y);
    if (Object.getPrototypeOf(x) !== Object.getPrototypeOf(y)) return `${path}: prototype ${protoName(x)} instead of ${protoName(y)}`;
    return compareContents(x, y, path);
  };

  const compareContents = (x: object, y: object, path: string): Difference => {
    if (y instanceof ArrayBuffer) {
      const xb = x as ArrayBuffer;
      if (xb.byteLength !== y.byteLength) return `${path}: ArrayBuffer of ${xb.byteLength} bytes instead of ${y.byteLength}`;
      // ES2024 fields, not in this project's lib typings.
      const limits = (buffer: ArrayBuffer) => (buffer as unknown as { resizable: boolean; maxByteLength: number });
      if (limits(xb).resizable !== limits(y).resizable || limits(xb).maxByteLength !== limits(y).maxByteLength) return `${path}: resizability differs`;
      if (!Buffer.from(xb).equals(Buffer.from(y))) return `${path}: ArrayBuffer bytes differ`;
      return compareProperties(x, y, path);
    }
    if (ArrayBuffer.isView(y)) {
      const xv = x as ArrayBufferView;
      if (xv.byteOffset !== y.byteOffset || xv.byteLength !== y.byteLength) {
        return `${path}: view at ${xv.byteOffset}+${xv.byteLength} instead of ${y.byteOffset}+${y.byteLength}`;
      }
      // Through the graph, so two views of one buffer must share one buffer in the copy.
      return compare(xv.buffer, y.buffer, `${path}.buffer`);
    }
    if (y instanceof Date) return Object.is((x as Date).getTime(), y.getTime()) ? compareProperties(x, y, path) : `${path}: date differs`;
    if (y instanceof RegExp) {
      const xr = x as RegExp;
      if (xr.source !== y.source || xr.flags !== y.flags || xr.lastIndex !== y.lastIndex) return `${path}: RegExp differs`;
      return compareProperties(x, y, path);
    }
    if (y instanceof Map) {
      const xm = x as Map<unknown, unknown>;
      if (xm.size !== y.size) return `${path}: Map of ${xm.size} entries instead of ${y.size}`;
      const xs = [...xm];
      let i = 0;
      for (const [key, value] of y) {
        const [xKey, xValue] = xs[i]!;
        const problem = compare(xKey, key, `${path}.<key ${i}>`) ?? compare(xValue, value, `${path}.<value ${i}>`);
        if (problem !== null) return problem;
        i++;
      }
      return compareProperties(x, y, path);
    }
    if (y instanceof Set) {
      const xs = [...(x as Set<unknown>)];
      if (xs.length !== y.size) return `${path}: Set of ${xs.length} entries instead of ${y.size}`;
      let i = 0;
      for (const entry of y) {
        const problem = compare(xs[i], entry, `${path}.<entry ${i}>`);
        if (problem !== null) return problem;
        i++;
      }
      return compareProperties(x, y, path);
    }
    if (y instanceof Error) {
      const xe = x as Error;
      if (xe.name !== y.name || xe.message !== y.message || xe.stack !== y.stack) return `${path}: Error name, message or stack differs`;
    }
    for (const boxed of [Number, String, Boolean, BigInt] as Array<{ prototype: { valueOf(): unknown } }>) {
      if (Object.getPrototypeOf(y) === boxed.prototype) {
        if (!Object.is((x as { valueOf(): unknown }).valueOf(), (y as { valueOf(): unknown }).valueOf())) return `${path}: boxed value differs`;
        return compareProperties(x, y, path);
      }
    }
    if (Array.isArray(y)) {
      const xa = x as unknown[];
      if (xa.length !== y.length) return `${path}: length ${xa.length} instead of ${y.length}`;
      for (let i = 0; i < y.length; i++) {
        if (i in xa !== i in y) return `${path}[${i}]: ${i in y ? 'a hole' : 'a value'} where the original has ${i in y ? 'a value' : 'a hole'}`;
      }
    }
    return compareProperties(x, y, path);
  };

  /** Every own property, data or accessor, enumerable or not, string or symbol keyed. */
  const compareProperties = (x: object, y: object, path: string): Difference => {
    const xKeys = Reflect.ownKeys(x);
    const yKeys = Reflect.ownKeys(y);
    if (xKeys.length !== yKeys.length || xKeys.some((key, i) => key !== yKeys[i])) {
      return `${path}: own keys [${xKeys.map(String).join(', ')}] instead of [${yKeys.map(String).join(', ')}]`;
    }
    for (const key of yKeys) {
      const xd = Object.getOwnPropertyDescriptor(x, key)!;
      const yd = Object.getOwnPropertyDescriptor(y, key)!;
      const at = `${path}.${String(key)}`;
      if ('value' in xd !== 'value' in yd) return `${at}: ${'value' in xd ? 'a data property' : 'an accessor'} where the original has the other kind`;
      if (xd.enumerable !== yd.enumerable) return `${at}: enumerability differs`;
      if ('value' in yd) {
        const problem = compare(xd.value, yd.value, at);
        if (problem !== null) return problem;
      } else if (xd.get !== yd.get || xd.set !== yd.set) {
        return `${at}: accessor differs`;
      }
    }
    return null;
  };

  return compare(copy, original, rootName);
}

/** The difference a trip through `copy` makes to `value`, or the error the trip threw. */
export function tripDifference(value: unknown, copy: (value: unknown) => unknown): Difference {
  let copied: unknown;
  try {
    copied = copy(value);
  } catch (error) {
    return `the trip threw ${(error as Error).message}`;
  }
  return graphDifference(copied, value);
}

function protoName(value: object): string {
  const proto = Object.getPrototypeOf(value) as { constructor?: { name?: string } } | null;
  return proto === null ? 'null' : (proto.constructor?.name ?? '(anonymous)');
}

function show(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'bigint') return `${value}n`;
  if (Object.is(value, -0)) return '-0';
  return String(value);
}
