// `npm run build`, and npm's `prepare` (so `npm pack` and an install from git build it too):
// compiles kernel/ into dist/ as JavaScript with .d.ts types, what the package's exports point
// at. A project that installs Theseus then needs no TypeScript loader. The repo itself never
// needs this step: `node kernel` and the tests run the TypeScript through tsx.
//
// Plain JavaScript, so that it runs wherever npm runs it, before anything is compiled.

import { spawnSync } from 'node:child_process';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const repo = dirname(dirname(fileURLToPath(import.meta.url)));
const dist = join(repo, 'dist');

// A file whose source was deleted must not linger in the package.
await rm(dist, { recursive: true, force: true });

const require = createRequire(import.meta.url);
let tsc;
try {
  tsc = join(dirname(require.resolve('typescript/package.json')), 'bin', 'tsc');
} catch {
  // `npm ci --omit=dev` runs prepare too, and installing needs no dist/: say so and go on. A pack,
  // a publish or `npm run build` without a compiler must fail, or the package would ship nothing.
  if (['ci', 'install'].includes(process.env.npm_command ?? '')) {
    process.stderr.write('build-package: dist/ not built: the typescript package is missing (dev dependencies omitted). `npm pack` needs them.\n');
    process.exit(0);
  }
  process.stderr.write('build-package: the typescript package is missing; run `npm ci` (with dev dependencies) first.\n');
  process.exit(1);
}
const compiled = spawnSync(process.execPath, [tsc, '-p', join(repo, 'tsconfig.build.json')], { cwd: repo, stdio: 'inherit' });
if (compiled.status !== 0) {
  process.stderr.write(`build-package: tsc -p tsconfig.build.json failed (exit ${compiled.status ?? compiled.signal}); dist/ is incomplete.\n`);
  process.exit(1);
}

// The dashboard page runs in a browser and is not compiled with the rest: its script is bundled
// (uPlot inside) next to the module that serves it, as a release ships it next to its kernel.
const { bundleDashboardScript, DASHBOARD_SCRIPT } = await import(pathToFileURL(join(dist, 'release', 'dashboard-bundle.js')).href);
await writeFile(join(dist, 'release', DASHBOARD_SCRIPT), await bundleDashboardScript(join(repo, 'kernel', 'main', 'admin', 'page', 'main.ts')));

// tsc rewrites the sources' './x.ts' imports to './x.js' in the JavaScript but leaves them as
// written in the .d.ts files; name the files that exist there, as a consumer's tsc expects.
for (const file of await readdir(dist, { recursive: true })) {
  if (!file.endsWith('.d.ts')) continue;
  const path = join(dist, file);
  const text = await readFile(path, 'utf8');
  const rewritten = text.replace(/((?:from|import)\s*\(?\s*)(['"])(\.\.?\/[^'"]*)\.ts\2/g, '$1$2$3.js$2');
  if (rewritten !== text) await writeFile(path, rewritten);
}
