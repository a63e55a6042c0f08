// Build time against the number of services: a generated app with N trivial services is built
// with the same code as `kernel release`, from a cold output folder each time.

import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildRelease } from '../../kernel/release/build.ts';

const serviceModule = fileURLToPath(new URL('../../kernel/service.ts', import.meta.url));
const configModule = fileURLToPath(new URL('../../kernel/release/config.ts', import.meta.url));

async function generateApp(services: number): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `theseus-bench-build-${services}-`));
  await writeFile(join(dir, 'package.json'), JSON.stringify({ name: 'generated', version: '1.0.0', type: 'module' }));
  const entries: string[] = [];
  for (let i = 0; i < services; i++) {
    const name = `svc${i}`;
    await mkdir(join(dir, 'services', name), { recursive: true });
    await writeFile(
      join(dir, 'services', name, 'index.ts'),
      `import { defineService } from '${serviceModule}';\n` +
        `export default defineService({ vsn: '0', init: () => ({ n: ${i} }), calls: { get: ({ state }) => ({ reply: state.n }) }, ` +
        `casts: { add: ({ state }, k: number) => ({ state: { n: state.n + k } }) } });\n`,
    );
    entries.push(`    ${name}: { entry: './services/${name}/index.ts' },`);
  }
  await writeFile(
    join(dir, 'theseus.config.ts'),
    `import { defineRelease } from '${configModule}';\nexport default defineRelease({\n  app: 'generated',\n  services: {\n${entries.join('\n')}\n  },\n});\n`,
  );
  return dir;
}

/** Milliseconds to build a release of each size, keyed by service count. */
export async function benchBuild(counts: readonly number[]): Promise<Record<string, number>> {
  const result: Record<string, number> = {};
  // One throwaway build first, so the kernel bundle inside every tarball is already built and the
  // figures compare services, not a one-time cost.
  for (const count of [1, ...counts]) {
    const app = await generateApp(count);
    const out = join(app, 'releases');
    try {
      const started = performance.now();
      await buildRelease({ configFile: join(app, 'theseus.config.ts'), outDir: out });
      result[String(count)] = Math.round(performance.now() - started);
    } finally {
      await rm(app, { recursive: true, force: true });
    }
  }
  return result;
}
