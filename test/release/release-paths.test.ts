// The path rules of a release (kernel/release/release-paths.ts) on their own, in this process:
// which paths are inside a release and why the others are not, the lexical and the realpath
// check against a folder on disk, and JSON read without prototypes. manifest-keys.test.ts checks
// the same rules against the manifest schema and the installer; this file is the fast one, which
// `npm run mutate -- release-paths` runs once per mutant.

import assert from 'node:assert/strict';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { tempDir } from '../temp-dirs.ts';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { MAX_RELEASE_PATH_LENGTH, RELEASE_PATH_PATTERN, assertRealpathInside, parseUntrustedJson, pathInside, releasePathProblem } from '../../kernel/release/release-paths.ts';

test('paths inside a release: relative, normalized, forward slashes, no control characters, at most 1024 characters', () => {
  const accepted = ['a', 'a/b/c.mjs', '...', '.hidden/..x/x..', 'a b/ c ', 'é/🙂', '1:y', 'a/c:d', 'ab:/c', '-', '\u0080\u00a0', 'x'.repeat(MAX_RELEASE_PATH_LENGTH), `${'a/'.repeat(511)}bc`];
  for (const path of accepted) {
    assert.equal(releasePathProblem(path), null, JSON.stringify(path));
    assert.match(path, new RegExp(RELEASE_PATH_PATTERN), `the schema's pattern agrees on ${JSON.stringify(path)}`);
  }
  // Each refused path is told the rule it breaks.
  const refused: Array<[string, RegExp]> = [
    ['', /^is empty$/],
    ['x'.repeat(MAX_RELEASE_PATH_LENGTH + 1), /longer than 1024/],
    ['/etc/passwd', /absolute/],
    ['/', /absolute/],
    ['C:/x', /absolute/],
    ['c:x', /absolute/],
    ['Z:', /absolute/],
    ['a\\b', /backslash/],
    ['\\\\server\\share', /backslash/],
    ['a\u0000b', /control/],
    ['a\nb', /control/],
    ['a\u001fb', /control/],
    ['\u007f', /control/],
    ['..', /'\.\.'/],
    ['../a', /'\.\.'/],
    ['a/..', /'\.\.'/],
    ['a/../b', /'\.\.'/],
    ['.', /normalized/],
    ['./a', /normalized/],
    ['a/.', /normalized/],
    ['a//b', /normalized/],
    ['a/', /normalized/],
  ];
  for (const [path, reason] of refused) {
    const problem = releasePathProblem(path);
    assert.match(problem ?? 'accepted', reason, JSON.stringify(path));
    // The length is not in this pattern: the manifest schema adds it (manifest.ts).
    if (path.length <= MAX_RELEASE_PATH_LENGTH) assert.doesNotMatch(path, new RegExp(RELEASE_PATH_PATTERN), `the schema's pattern agrees on ${JSON.stringify(path)}`);
  }
});

test('pathInside: the absolute path of an accepted path, and a coded refusal naming the rule for any other', () => {
  const dir = '/srv/theseus/releases/1.0.0';
  assert.equal(pathInside(dir, 'services/a.mjs'), '/srv/theseus/releases/1.0.0/services/a.mjs');
  assert.equal(pathInside(`${dir}/`, 'a'), `${dir}/a`, 'a trailing slash on the folder changes nothing');
  assert.equal(pathInside('relative/dir', 'a'), resolve('relative/dir', 'a'));
  for (const [path, reason] of [['../x', /climbs out/], ['/etc/passwd', /absolute/], ['a/./b', /normalized/], ['', /empty/]] as const) {
    assert.throws(
      () => pathInside(dir, path),
      (error: Error & { code: string }) => {
        assert.equal(error.code, 'E_RELEASE_PATH_ESCAPES');
        assert.match(error.message, reason, path);
        assert.ok(error.message.includes(JSON.stringify(path)), `the message names ${JSON.stringify(path)}`);
        return true;
      },
    );
  }
});

test('assertRealpathInside: symbolic links are followed, and must end inside the folder (not in a sibling named like it)', async () => {
  const sandbox = await tempDir('theseus-realpath-');
  const dir = join(sandbox, 'release');
  const sibling = join(sandbox, 'release-evil');
  await mkdir(join(dir, 'sub'), { recursive: true });
  await mkdir(sibling);
  await writeFile(join(dir, 'sub', 'a'), 'a');
  await writeFile(join(sibling, 'b'), 'b');
  await writeFile(join(sandbox, 'outside'), 'o');
  await assertRealpathInside(dir, 'sub/a', join(dir, 'sub', 'a'));
  // The folder reached through a link of its own: both sides are resolved.
  await symlink(dir, join(sandbox, 'link-to-release'));
  await assertRealpathInside(join(sandbox, 'link-to-release'), 'sub/a', join(sandbox, 'link-to-release', 'sub', 'a'));
  // A link inside the folder to another file inside it stays inside.
  await symlink(join(dir, 'sub', 'a'), join(dir, 'inner'));
  await assertRealpathInside(dir, 'inner', join(dir, 'inner'));
  const escapes: Array<[string, string]> = [
    ['to-outside', join(sandbox, 'outside')],
    ['to-sibling', join(sibling, 'b')],
    ['to-itself', dir],
    ['to-parent', sandbox],
  ];
  for (const [name, target] of escapes) {
    await symlink(target, join(dir, name));
    await assert.rejects(assertRealpathInside(dir, name, join(dir, name)), (error: Error & { code: string }) => {
      assert.equal(error.code, 'E_RELEASE_PATH_ESCAPES', name);
      assert.match(error.message, /symbolic link/, name);
      return true;
    });
  }
  await symlink(sibling, join(dir, 'sub', 'folder-link'));
  await assert.rejects(assertRealpathInside(dir, 'sub/folder-link/b', join(dir, 'sub', 'folder-link', 'b')), { code: 'E_RELEASE_PATH_ESCAPES' }, 'through a linked folder');
});

test('parseUntrustedJson: every object without a prototype, arrays still arrays, keys only ever own keys', () => {
  const parsed = parseUntrustedJson('{"__proto__": {"polluted": 1}, "constructor": "c", "list": [{"a": 1}, [2, {"b": null}], null, "s"], "n": null, "deep": {"x": {"y": true}}}') as Record<string, any>;
  assert.equal(Object.getPrototypeOf(parsed), null);
  assert.deepEqual(Object.keys(parsed), ['__proto__', 'constructor', 'list', 'n', 'deep'], 'every key kept, own and in order');
  assert.equal(Object.getPrototypeOf(parsed.__proto__), null);
  assert.equal(parsed.__proto__.polluted, 1, '__proto__ is an own key holding its value');
  assert.equal(({} as Record<string, unknown>).polluted, undefined, 'Object.prototype untouched');
  assert.equal(parsed.constructor, 'c');
  assert.equal(parsed.toString, undefined, 'nothing inherited');
  assert.equal(Array.isArray(parsed.list), true);
  assert.equal(Object.getPrototypeOf(parsed.list), Array.prototype);
  assert.equal(Object.getPrototypeOf(parsed.list[0]), null);
  assert.equal(Object.getPrototypeOf(parsed.list[1][1]), null);
  assert.equal(parsed.list[1][1].b, null);
  assert.equal(parsed.list[2], null);
  assert.equal(parsed.n, null);
  assert.equal(Object.getPrototypeOf(parsed.deep.x), null);
  assert.equal(parsed.deep.x.y, true);
  for (const text of ['1', '"s"', 'null', 'true', '[]']) assert.deepEqual(parseUntrustedJson(text), JSON.parse(text), text);
  assert.throws(() => parseUntrustedJson('{not json'), SyntaxError);
});
