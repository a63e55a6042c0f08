#!/usr/bin/env node
// `node kernel <verb>` in the repo, and the installed package's `kernel` bin. In the repo, the
// TypeScript sources sit next to this file: load the CLI through tsx, so the repo runs without a
// build step. The package ships no sources, only dist/ (compiled by scripts/build-package.mjs),
// and runs that, with no TypeScript loader.
import { existsSync } from 'node:fs';

const source = new URL('./cli/main.ts', import.meta.url);
if (existsSync(source)) {
  // tsx is a dev dependency: a checkout installed with --omit=dev has none.
  const tsx = await import('tsx/esm/api').catch((error) => {
    if (error?.code !== 'ERR_MODULE_NOT_FOUND') throw error;
    process.stderr.write('kernel: running from the sources needs tsx, a dev dependency; run `npm ci` here without --omit=dev, or install the built package (`npm pack`).\n');
    process.exit(1);
  });
  tsx.register();
  await import(source.href);
} else {
  await import('../dist/cli/main.js');
}
