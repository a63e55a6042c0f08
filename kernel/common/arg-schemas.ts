// How the arguments a service declares read to a person: `incrementNumber(delta: integer)`. The
// worker's E_ARGS_INVALID messages and the console's `.help <service>` both write them here, so an
// error says what the help says. Reads JSON Schema, the form a descriptor carries (a live TypeBox
// schema is the same object with symbol keys added, so it reads the same).

import type { ArgumentSchema } from './protocol.ts';

/** Deeper than this, an object or array is shown as `{…}` or `[…]`: a help line, not a document. */
const MAX_DEPTH = 3;

/** `name(delta: integer, label?: string)`: one argument per schema, named by its `title`. */
export function signatureText(method: string, schemas: readonly ArgumentSchema[]): string {
  return `${method}(${schemas.map((schema) => argumentText(schema)).join(', ')})`;
}

/** One argument: `delta: integer`, or the type alone when the schema has no title. */
export function argumentText(schema: ArgumentSchema): string {
  const type = schemaText(schema);
  return typeof schema.title === 'string' && schema.title !== '' ? `${schema.title}: ${type}` : type;
}

/** A schema as a short type: `integer (>= 1)`, `{ by: integer, note?: string }`, `string | null`. */
export function schemaText(schema: unknown, depth = 0): string {
  if (schema === null || typeof schema !== 'object') return 'anything';
  const s = schema as ArgumentSchema;
  if ('const' in s) return JSON.stringify(s.const) ?? String(s.const);
  if (Array.isArray(s.enum)) return s.enum.map((value) => JSON.stringify(value)).join(' | ');
  for (const [keyword, joiner] of [['anyOf', ' | '], ['oneOf', ' | '], ['allOf', ' & ']] as const) {
    const parts = s[keyword];
    if (Array.isArray(parts)) return parts.map((part) => schemaText(part, depth)).join(joiner);
  }
  if (typeof s.$ref === 'string') return s.$ref;
  if (s.not !== undefined) return `not ${schemaText(s.not, depth)}`;
  const types = Array.isArray(s.type) ? s.type : [s.type];
  return types.map((type) => typeText(s, type, depth) + constraintsText(s)).join(' | ');
}

function typeText(s: ArgumentSchema, type: unknown, depth: number): string {
  switch (type) {
    case 'object':
      return depth >= MAX_DEPTH ? '{…}' : objectText(s, depth + 1);
    case 'array':
      return depth >= MAX_DEPTH ? '[…]' : arrayText(s, depth + 1);
    case undefined:
      // A schema with no type takes anything its other keywords allow.
      return 'properties' in s ? objectText(s, depth + 1) : 'anything';
    case 'integer':
      return isSafeRange(s) ? 'safe integer' : 'integer';
    default:
      return String(type);
  }
}

/** The bounds of Number.isSafeInteger: said in words rather than in sixteen digits each. */
function isSafeRange(s: ArgumentSchema): boolean {
  return s.minimum === Number.MIN_SAFE_INTEGER && s.maximum === Number.MAX_SAFE_INTEGER;
}

function objectText(s: ArgumentSchema, depth: number): string {
  const required = new Set(Array.isArray(s.required) ? (s.required as unknown[]) : []);
  const fields: string[] = [];
  if (s.properties !== null && typeof s.properties === 'object') {
    for (const [name, inner] of Object.entries(s.properties as Record<string, unknown>)) {
      fields.push(`${propertyName(name)}${required.has(name) ? '' : '?'}: ${schemaText(inner, depth)}`);
    }
  }
  if (s.patternProperties !== null && typeof s.patternProperties === 'object') {
    for (const inner of Object.values(s.patternProperties as Record<string, unknown>)) fields.push(`[key: string]: ${schemaText(inner, depth)}`);
  }
  if (s.additionalProperties !== null && typeof s.additionalProperties === 'object') fields.push(`[key: string]: ${schemaText(s.additionalProperties, depth)}`);
  return fields.length === 0 ? 'object' : `{ ${fields.join(', ')} }`;
}

function arrayText(s: ArgumentSchema, depth: number): string {
  const tuple = Array.isArray(s.prefixItems) ? s.prefixItems : Array.isArray(s.items) ? s.items : null;
  if (tuple) return `[${tuple.map((item) => schemaText(item, depth)).join(', ')}]`;
  if (s.items === undefined) return 'array';
  const item = schemaText(s.items, depth);
  return /[ |&]/.test(item) && !item.startsWith('{') ? `(${item})[]` : `${item}[]`;
}

/** Bounds and formats, after the type: `integer (>= 1, <= 10)`, `string (matching ^[a-z]+$)`. */
function constraintsText(s: ArgumentSchema): string {
  const parts: string[] = [];
  const safe = isSafeRange(s);
  const bounds: Array<[string, string]> = [
    ['minimum', '>='],
    ['exclusiveMinimum', '>'],
    ['maximum', '<='],
    ['exclusiveMaximum', '<'],
    ['multipleOf', 'a multiple of'],
    ['minLength', 'length >='],
    ['maxLength', 'length <='],
    ['minItems', 'items >='],
    ['maxItems', 'items <='],
    ['format', 'format'],
    ['pattern', 'matching'],
  ];
  for (const [keyword, words] of bounds) {
    if (safe && (keyword === 'minimum' || keyword === 'maximum')) continue;
    if (typeof s[keyword] === 'number' || typeof s[keyword] === 'string') parts.push(`${words} ${String(s[keyword])}`);
  }
  return parts.length === 0 ? '' : ` (${parts.join(', ')})`;
}

function propertyName(name: string): string {
  return /^[A-Za-z_$][\w$]*$/.test(name) ? name : JSON.stringify(name);
}
