// What a release's own files may say about paths, and how untrusted JSON is read. Used by the
// manifest schema, the installer and the tar scanner, in the CLI's process, the kernel's main
// thread and the unpack worker.
//
// A manifest and a tar header are written by whoever built the archive, so every path they name
// is hostile until checked: a path inside a release is relative, normalized (no `.`, `..` or empty
// segment), uses forward slashes only and holds no control character. The rule is written once
// here, as code and as the JSON-schema pattern the manifest schema uses, and tested against each
// other and against hostile input (test/release/manifest-keys.test.ts).

import { realpath } from 'node:fs/promises';
import { isAbsolute, relative, resolve, sep } from 'node:path';
import { theseusError } from '../common/errors.ts';

/** Longest path inside a release, in UTF-16 code units (Linux's PATH_MAX is 4096 bytes). */
export const MAX_RELEASE_PATH_LENGTH = 1024;

// One segment: not `.` nor `..`, no slash, backslash, C0 control (NUL and newline included) or
// DEL; the first may not look like a Windows drive (`C:`). No `.` wildcard anywhere: in a JS regex it stops at a newline, which once let
// `a\n/../../x` through a lookahead meant to refuse `..`.
const SEGMENT = '(?!\\.\\.?(?:/|$))[^/\\\\\\u0000-\\u001f\\u007f]+';

/** The JSON-schema pattern of a path inside a release (anchored, as TypeBox compiles it). */
export const RELEASE_PATH_PATTERN = `^(?![A-Za-z]:)${SEGMENT}(?:/${SEGMENT})*$`;
const releasePathPattern = new RegExp(RELEASE_PATH_PATTERN);

/** Why `path` is not a path inside a release, or null when it is one. */
export function releasePathProblem(path: string): string | null {
  if (path.length === 0) return 'is empty';
  if (path.length > MAX_RELEASE_PATH_LENGTH) return `is longer than ${MAX_RELEASE_PATH_LENGTH} characters`;
  if (path.startsWith('/') || /^[A-Za-z]:/.test(path)) return 'is absolute';
  if (path.includes('\\')) return 'holds a backslash';
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(path)) return 'holds a control character';
  const segments = path.split('/');
  if (segments.includes('..')) return "climbs out with '..'";
  if (segments.includes('.') || segments.includes('')) return "is not normalized (an empty or '.' segment)";
  // The code above and the schema's pattern must agree; a disagreement is refused, never trusted.
  if (!releasePathPattern.test(path)) return 'does not match the release path pattern';
  return null;
}

/**
 * The absolute path of `path` inside `dir`, refusing any that leaves it. Lexical only: call
 * assertRealpathInside once the file exists, which also sees symbolic links.
 */
export function pathInside(dir: string, path: string): string {
  const problem = releasePathProblem(path);
  const full = resolve(dir, path);
  const back = relative(resolve(dir), full);
  if (problem !== null || back === '' || back.startsWith(`..${sep}`) || back === '..' || isAbsolute(back)) {
    throw theseusError('E_RELEASE_PATH_ESCAPES', dir, path, problem === null ? `it resolves to ${full}` : `it ${problem}`);
  }
  return full;
}

/** Throws E_RELEASE_PATH_ESCAPES unless `file`, symbolic links resolved, is inside `dir` (also resolved). */
export async function assertRealpathInside(dir: string, path: string, file: string): Promise<void> {
  const [realDir, realFile] = await Promise.all([realpath(dir), realpath(file)]);
  if (!realFile.startsWith(realDir + sep)) throw theseusError('E_RELEASE_PATH_ESCAPES', dir, path, `through a symbolic link, it resolves to ${realFile}`);
}

/**
 * JSON.parse, with every object made without a prototype: a key such as `constructor` or
 * `__proto__` is then only ever an own key, and a lookup of a missing key is undefined, never
 * something inherited from Object.prototype.
 */
export function parseUntrustedJson(text: string): unknown {
  return JSON.parse(text, (_key, value: unknown) => {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) return value;
    // Object.fromEntries defines own properties (an own `__proto__` stays a plain key).
    return Object.setPrototypeOf(Object.fromEntries(Object.entries(value)), null) as unknown;
  });
}
