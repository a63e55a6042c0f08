// Finds the first value inside `root` that would not survive a trip between threads intact.
//
// Structured clone throws on functions and symbols, but it silently drops prototypes and class
// identity, so a class instance "survives" as a bag of fields and breaks later in the new code.
// State must be plain data, so this check refuses both kinds and names the path
// (`state.cache.fn is a function`) so the author can find it.
//
// It runs at every snapshot, inside a swap's pause, so it is built for speed: primitives are never
// pushed, and a path string is only made for the value that fails.

const clonableBuiltins: ReadonlyArray<abstract new (...args: never[]) => unknown> = [Date, RegExp, ArrayBuffer, SharedArrayBuffer];

function describe(value: unknown): string {
  if (typeof value === 'function') return 'a function';
  if (typeof value === 'symbol') return 'a symbol';
  const proto = Object.getPrototypeOf(value) as { constructor?: { name?: string } } | null;
  const name = proto?.constructor?.name;
  return name ? `an instance of ${name}` : 'an object with a custom prototype';
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
export function findNonPlainData(root: unknown, rootName = 'state'): string | null {
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
      return `${formatStep(parent < 0 ? rootName : pathOf(parent), step)} is ${describe(value)}`;
    }
    if (value === null || type !== 'object' || seen.has(value as object)) return null;
    seen.add(value as object);
    nodeParent.push(parent);
    nodeStep.push(step);
    nodeValue.push(value as object);
    pending.push(nodeValue.length - 1);
    return null;
  };

  const type = typeof root;
  if (type === 'function' || type === 'symbol') return `${rootName} is ${describe(root)}`;
  if (root === null || type !== 'object') return null;
  seen.add(root as object);
  nodeParent.push(-1);
  nodeStep.push('');
  nodeValue.push(root as object);
  pending.push(0);

  while (pending.length > 0) {
    const node = pending.pop()!;
    const object = nodeValue[node]!;
    let problem: string | null = null;
    if (Array.isArray(object)) {
      for (let i = 0; i < object.length && problem === null; i++) problem = visit(object[i], node, i);
    } else {
      const proto = Object.getPrototypeOf(object) as object | null;
      if (proto === Object.prototype || proto === null) {
        const symbols = Object.getOwnPropertySymbols(object);
        if (symbols.length > 0) return `${node === 0 ? rootName : pathOf(node)} has a symbol key ${String(symbols[0])}`;
        const record = object as Record<string, unknown>;
        for (const key in record) {
          if (problem !== null) break;
          problem = visit(record[key], node, key);
        }
      } else if (proto === Map.prototype) {
        let index = 0;
        for (const [key, entry] of object as Map<unknown, unknown>) {
          problem = visit(key, node, { mapKeyOf: index }) ?? visit(entry, node, { mapValue: key, index });
          if (problem !== null) break;
          index++;
        }
      } else if (proto === Set.prototype) {
        let index = 0;
        for (const entry of object as Set<unknown>) {
          problem = visit(entry, node, { setEntry: index++ });
          if (problem !== null) break;
        }
      } else if (!ArrayBuffer.isView(object) && !(object instanceof Error) && !clonableBuiltins.some((ctor) => proto === ctor.prototype)) {
        // A subclass of a built-in (class Registry extends Map) is refused too: the clone would
        // arrive as the plain built-in, without the subclass's methods.
        return `${node === 0 ? rootName : pathOf(node)} is ${describe(object)}`;
      }
    }
    if (problem !== null) return problem;
  }
  return null;
}

/** Why `value` could not be posted: the offending path when the checker finds one, else the clone error. */
export function explainCloneFailure(value: unknown, rootName: string, error: unknown): string {
  return findNonPlainData(value, rootName) ?? (error instanceof Error ? error.message : String(error));
}
