#!/usr/bin/env node
// `node kernel <verb>` and the package's `kernel` bin: load the TypeScript CLI through tsx, so the
// repo runs without a build step.
import { register } from 'tsx/esm/api';

register();
await import('./cli/main.ts');
