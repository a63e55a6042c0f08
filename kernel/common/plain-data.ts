// Finds the first value inside `root` that would not survive a trip between threads intact.
//
// Structured clone throws on functions and symbols, but it silently drops prototypes, getters and
// class identity, so a class instance "survives" as a bag of fields and breaks later in the new
// code. State must be plain data, so this check refuses both kinds and names the path
// (`state.cache.fn is a function`) so the author can find it.

const clonableBuiltins: ReadonlyArray<abstract new (...args: never[]) => unknown> = [
  Date,
  RegExp,
  Map,
  Set,
  ArrayBuffer,
  DataView,
  Error,
];

function isTypedArray(value: object): boolean {
  return ArrayBuffer.isView(value);
}

function describe(value: unknown): string {
  if (typeof value === 'function') return 'a function';
  if (typeof value === 'symbol') return 'a symbol';
  const proto = Object.getPrototypeOf(value) as { constructor?: { name?: string } } | null;
  const name = proto?.constructor?.name;
  return name ? `an instance of ${name}` : 'an object with a custom prototype';
}

function formatKey(path: string, key: string | number): string {
  if (typeof key === 'number') return `${path}[${key}]`;
  return /^[A-Za-z_$][\w$]*$/.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`;
}

/** Returns `null` when the value is plain data, else a sentence naming the first offending path. */
export function findNonPlainData(root: unknown, rootName = 'state'): string | null {
  const seen = new Set<object>();
  // An explicit stack rather than recursion: states can be deep, and a stack overflow in a
  // checker would be a worse error than the one it is looking for.
  const stack: Array<[unknown, string]> = [[root, rootName]];
  while (stack.length > 0) {
    const [value, path] = stack.pop()!;
    const type = typeof value;
    if (type === 'function' || type === 'symbol') return `${path} is ${describe(value)}`;
    if (value === null || type !== 'object') continue;
    const object = value as object;
    if (seen.has(object)) continue;
    seen.add(object);

    if (Array.isArray(object)) {
      for (let i = object.length - 1; i >= 0; i--) stack.push([object[i], formatKey(path, i)]);
      continue;
    }
    const proto = Object.getPrototypeOf(object) as object | null;
    if (proto === Object.prototype || proto === null) {
      for (const key of Object.getOwnPropertySymbols(object)) {
        return `${path} has a symbol key ${String(key)}`;
      }
      const keys = Object.keys(object);
      for (let i = keys.length - 1; i >= 0; i--) {
        const key = keys[i]!;
        const descriptor = Object.getOwnPropertyDescriptor(object, key);
        if (descriptor && (descriptor.get || descriptor.set)) return `${formatKey(path, key)} is a getter/setter`;
        stack.push([descriptor?.value, formatKey(path, key)]);
      }
      continue;
    }
    if (object instanceof Map) {
      let index = 0;
      for (const [key, entry] of object) {
        stack.push([key, `${path}.<key ${index}>`]);
        stack.push([entry, `${path}.get(${typeof key === 'string' ? JSON.stringify(key) : `<key ${index}>`})`]);
        index++;
      }
      continue;
    }
    if (object instanceof Set) {
      let index = 0;
      for (const entry of object) stack.push([entry, `${path}.<entry ${index++}>`]);
      continue;
    }
    if (isTypedArray(object) || clonableBuiltins.some((ctor) => object instanceof ctor && proto === ctor.prototype)) {
      continue;
    }
    if (object instanceof Error) continue; // subclasses of Error clone as Error; acceptable for data
    return `${path} is ${describe(object)}`;
  }
  return null;
}

/** Why `value` could not be posted: the offending path when the checker finds one, else the clone error. */
export function explainCloneFailure(value: unknown, rootName: string, error: unknown): string {
  return findNonPlainData(value, rootName) ?? (error instanceof Error ? error.message : String(error));
}
