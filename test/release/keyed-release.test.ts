// A keyed service in a release: `kernel release` records `keyed` in the manifest and carries the
// config's `precopy` settings, and refuses what cannot work, each with a message naming the fix.

import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { buildRelease } from '../../kernel/release/build.ts';
import { fixture } from '../helpers.ts';
import { tempDir } from '../temp-dirs.ts';

async function build(config: Record<string, unknown>) {
  const dir = await tempDir('theseus-keyed-release-');
  await writeFile(join(dir, 'package.json'), JSON.stringify({ name: 'store', version: '1.0.0', type: 'module' }));
  await writeFile(join(dir, 'theseus.config.ts'), `export default ${JSON.stringify({ app: 'store', ...config }, null, 2)};\n`);
  return buildRelease({ configFile: join(dir, 'theseus.config.ts'), outDir: join(dir, 'releases') });
}

async function refusal(config: Record<string, unknown>): Promise<{ code?: string; message: string }> {
  const error = await build(config).then(
    () => null,
    (caught: Error & { code?: string }) => caught,
  );
  assert.ok(error, 'the build was refused');
  return error;
}

const keyed = { entry: fixture('keyed-v1') };

test('a keyed service and the precopy settings land in the manifest', async () => {
  const result = await build({ services: { keyed }, precopy: { maxRounds: 3, stopAtKeys: 100 } });
  assert.equal(result.manifest.services.keyed!.keyed, true);
  assert.deepEqual(result.manifest.precopy, { maxRounds: 3, stopAtKeys: 100 });
  const plain = await build({ services: { counter: { entry: fixture('counter-v1') } } });
  assert.equal('keyed' in plain.manifest.services.counter!, false, 'a service that is not keyed says nothing');
  assert.equal('precopy' in plain.manifest, false);
});

test('refused: precopy settings out of range, and a pooled keyed service', async () => {
  const negative = await refusal({ services: { keyed }, precopy: { maxRounds: -1 } });
  assert.equal(negative.code, 'E_CONFIG_INVALID');
  assert.match(negative.message, /maxRounds/);
  const unknown = await refusal({ services: { keyed }, precopy: { rounds: 2 } });
  assert.equal(unknown.code, 'E_CONFIG_INVALID');
  const pooled = await refusal({ services: { keyed: { ...keyed, pool: { size: 1 } } } });
  assert.equal(pooled.code, 'E_POOLED_KEYED');
  assert.match(pooled.message, /Remove keyed, or run the service stateful/);
});
