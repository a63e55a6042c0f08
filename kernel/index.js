#!/usr/bin/env node
// `node kernel <verb>` in the repo, and the installed package's `kernel` bin. In the repo, the
// TypeScript sources sit next to this file: load the CLI through tsx, so the repo runs without a
// build step. The package ships no sources, only dist/ (compiled by scripts/build-package.mjs),
// and runs that, with no TypeScript loader.
import { existsSync } from 'node:fs';

const source = new URL('./cli/main.ts', import.meta.url);
if (existsSync(source)) {
  const { register } = await import('tsx/esm/api');
  register();
  await import(source.href);
} else {
  await import('../dist/cli/main.js');
}
