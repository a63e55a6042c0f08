// `.help <service>` in the console: a service's calls and casts, each with the arguments it
// declares (from the control socket's `describe`), written the way they are typed at the prompt.

import { argumentText, schemaText } from '../common/arg-schemas.ts';
import type { ServiceDescription } from '../common/control-protocol.ts';
import type { ArgumentSchema } from '../common/protocol.ts';

/** The help of one service; `variable` is how the console reaches it (`sequence`, or `services["a-b"]`). */
export function serviceHelp(description: ServiceDescription, variable: string): string[] {
  const lines = [`${description.name} ${description.release} (vsn ${description.vsn})`];
  const section = (title: string, methods: readonly string[], prefix: string) => {
    lines.push(`  ${title}`);
    if (methods.length === 0) lines.push('    none');
    for (const method of methods) lines.push(...methodLines(`${prefix}${variable}.${method}`, Object.hasOwn(description.args, method) ? description.args[method]! : null));
  };
  section('calls (each replies):', description.calls, 'await ');
  section('casts (no reply):', description.casts, '');
  if (description.calls.some((m) => !Object.hasOwn(description.args, m)) || description.casts.some((m) => !Object.hasOwn(description.args, m))) {
    lines.push('  (...) marks a method that declares no arguments schema: it takes any arguments, unchecked.');
  }
  return lines;
}

/** `await sequence.nextBy(by: integer)`, then a line for each argument the schema describes. */
function methodLines(call: string, schemas: readonly ArgumentSchema[] | null): string[] {
  if (schemas === null) return [`    ${call}(...)`];
  const lines = [`    ${call}(${schemas.map((schema) => argumentText(schema)).join(', ')})`];
  for (const [index, schema] of schemas.entries()) {
    if (typeof schema.description !== 'string' || schema.description === '') continue;
    const name = typeof schema.title === 'string' && schema.title !== '' ? schema.title : `argument ${index} (${schemaText(schema)})`;
    lines.push(`        ${name}: ${schema.description}`);
  }
  return lines;
}
