// The dashboard page's script (kernel/main/admin/page/): the page's code and uPlot, with uPlot's
// CSS inside as text, bundled by esbuild into one file, so the page loads nothing from the
// internet. A release ships it prebuilt as lib/dashboard.js; a kernel run from a checkout bundles
// it on first use (kernel/main/admin/assets.ts). Runs in the CLI's process and the kernel's main
// thread.

import { dirname } from 'node:path';
import { kernelModule } from './bundler.ts';

/** The name the prebuilt script has in a release's lib/, next to the bundled kernel. */
export const DASHBOARD_SCRIPT = 'dashboard.js';

export async function bundleDashboardScript(): Promise<Uint8Array> {
  const entry = kernelModule('main/admin/page/main');
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
