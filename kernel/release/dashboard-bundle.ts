// The dashboard page's script (kernel/main/admin/page/): the page's code and uPlot, with uPlot's
// CSS inside as text, bundled by esbuild into one file, so the page loads nothing from the
// internet. It is prebuilt as `dashboard.js` next to the module that reads it: lib/dashboard.js
// beside the bundled kernel in a release, dist/release/dashboard.js in the npm package (built by
// scripts/build-package.mjs). From a checkout it is bundled on first use. Runs in the CLI's
// process (building a release) and the kernel's main thread (the admin listener serves it).

import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { errorMessage } from '../common/errors.ts';

/** The name the prebuilt script has, next to the module that reads it. */
export const DASHBOARD_SCRIPT = 'dashboard.js';

/** The page's entry in the checkout (the package and a release ship only the prebuilt script). */
export const DASHBOARD_ENTRY = join(dirname(dirname(fileURLToPath(import.meta.url))), 'main', 'admin', 'page', 'main.ts');

let script: Promise<Uint8Array> | null = null;

/** The script: prebuilt when there is one, else bundled once per process. */
export function dashboardScript(): Promise<Uint8Array> {
  script ??= (async () => {
    const prebuilt = await readFile(new URL(`./${DASHBOARD_SCRIPT}`, import.meta.url)).catch(() => null);
    return prebuilt ?? bundleDashboardScript(DASHBOARD_ENTRY);
  })().catch((error: unknown) => {
    // Not remembered: the next request tries again.
    script = null;
    throw new Error(`the dashboard's script could not be bundled: ${errorMessage(error)}`, { cause: error });
  });
  return script;
}

export async function bundleDashboardScript(entry: string): Promise<Uint8Array> {
  const { build } = await import('esbuild');
  const result = await build({
    entryPoints: [entry],
    bundle: true,
    platform: 'browser',
    format: 'iife',
    target: 'es2020',
    minify: true,
    write: false,
    logLevel: 'silent',
    // uPlot's licence stays with its code.
    legalComments: 'eof',
    loader: { '.css': 'text' },
    absWorkingDir: dirname(entry),
  });
  return result.outputFiles[0]!.contents;
}
