// The arguments every release of the sequence app declares. A delta is a whole number within the
// range where adding stays exact: a string ('10') would be concatenated into the state and a
// fraction or NaN would spoil every number after it, so the kernel refuses them before they run.
import { HttpRequestSchema, Type } from '../../../kernel/service.ts';

/** The argument of incrementNumber, described as each release uses it. */
export function deltaSchema(description: string) {
  return Type.Integer({ title: 'delta', description, minimum: Number.MIN_SAFE_INTEGER, maximum: Number.MAX_SAFE_INTEGER });
}

/** nextNumber takes nothing; the HTTP handlers take the request the front door builds. */
export const sequenceArgs = {
  nextNumber: [],
  httpNext: [HttpRequestSchema],
  httpIncrement: [HttpRequestSchema],
} as const;
