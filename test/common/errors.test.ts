// Every code the kernel raises is in the one registry (kernel/common/errors.ts): found by reading
// the kernel's sources for code literals, so a code added without its message fails here.

import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { errorCodes, theseusError } from '../../kernel/common/errors.ts';
import { root } from '../helpers.ts';

async function sourceFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  const nested = await Promise.all(
    entries.map((entry) => (entry.isDirectory() ? sourceFiles(join(dir, entry.name)) : Promise.resolve(entry.name.endsWith('.ts') ? [join(dir, entry.name)] : []))),
  );
  return nested.flat();
}

test('every error code written in the kernel is registered, E_INTERNAL included', async () => {
  const unregistered: string[] = [];
  for (const file of await sourceFiles(join(root, 'kernel'))) {
    const text = await readFile(file, 'utf8');
    for (const [, code] of text.matchAll(/['"`](E_[A-Z0-9_]+)['"`]/g)) {
      if (!errorCodes.has(code!)) unregistered.push(`${code} in ${file.slice(root.length)}`);
    }
  }
  assert.deepEqual(unregistered, []);
  assert.ok(errorCodes.has('E_INTERNAL'));
  assert.match(theseusError('E_INTERNAL', 'a swap lost track of its workers').message, /kernel bug/);
});
