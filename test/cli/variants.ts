// Variants of the example sequence app, built as real releases for the CLI tests: the service's
// source and the release config's extra fields are the test's; the HTTP front door is the
// example's own (GET /next, POST /increment), so clients keep their connections across swaps.

import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { buildRelease, type BuildResult } from '../../kernel/release/build.ts';
import { root as repo } from '../helpers.ts';
import { tempDir } from '../release/helpers.ts';

/**
 * Builds release `version` of the app "sequence" from `serviceSource` (a module body that may use
 * `defineService`, already imported) with `config` added to the release config (as TypeScript
 * object-literal text, e.g. "probationMs: 3000"). `http: false` leaves the front door out.
 */
export async function buildSequenceVariant(version: string, serviceSource: string, config = '', { http = true } = {}): Promise<BuildResult> {
  const app = await tempDir('theseus-variant-');
  await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'sequence', version, type: 'module' }));
  await mkdir(join(app, 'svc'));
  await writeFile(join(app, 'svc', 'sequence.ts'), `import { defineService } from '${repo}kernel/service.ts';\n${serviceSource}`);
  await writeFile(
    join(app, 'theseus.config.ts'),
    [
      `import { defineRelease } from '${repo}kernel/release/config.ts';`,
      `import { sequenceHttp } from '${repo}services/sequence/shared/http-config.ts';`,
      `export default defineRelease({ app: 'sequence', services: { sequence: { entry: './svc/sequence.ts', durability: 'reply' } }, ${http ? 'http: sequenceHttp, ' : ''}${config} });`,
      '',
    ].join('\n'),
  );
  return buildRelease({ configFile: join(app, 'theseus.config.ts'), outDir: join(app, 'releases') });
}
