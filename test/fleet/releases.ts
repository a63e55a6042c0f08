// Releases for the fleet test. The example's three, built to listen on every address of a host
// (a balancer reaches each host on its own address) on one fixed port, and two variants of 0.3.0
// that fail in the two ways a roll must stop at:
// - one whose health check fails where the deploy root holds a marker file: the kernel's own
//   probation reverts it, on that host only;
// - one that moves the HTTP front door to another port: the kernel is content (the upgrade passes
//   probation and commits), but the balancer's health check on the old port now fails, so only the
//   playbook's health check can catch it.

import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { buildRelease, type BuildResult } from '../../kernel/release/build.ts';
import { root as repo } from '../helpers.ts';
import { exampleConfig, exampleVersions } from '../release/helpers.ts';

/** The port of every host's front door (each namespace has its own ports). */
export const FLEET_HTTP_PORT = 8080;
/** The file whose presence in a deploy root makes the marked variant unhealthy there. */
export const UNHEALTHY_MARKER = 'fleet-unhealthy';

/** 0.1.0, 0.2.0 and 0.3.0 of the example, on 0.0.0.0:FLEET_HTTP_PORT. */
export async function buildFleetExamples(outDir: string): Promise<BuildResult[]> {
  // Read by services/sequence/shared/http-config.ts when the first config is imported.
  process.env.SEQUENCE_HTTP_HOST = '0.0.0.0';
  process.env.SEQUENCE_HTTP_PORT = String(FLEET_HTTP_PORT);
  const results: BuildResult[] = [];
  for (const version of exampleVersions) results.push(await buildRelease({ configFile: exampleConfig(version), outDir, log: () => undefined }));
  return results;
}

/** A release of the sequence app running 0.3.0's code, with `health` and `port` of its own, built under `dir`. */
async function build03Variant(dir: string, version: string, options: { health: string; port: number }): Promise<BuildResult> {
  const app = join(dir, `app-${version}`);
  await mkdir(app);
  await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'sequence', version, type: 'module' }));
  await mkdir(join(app, 'svc'));
  await writeFile(
    join(app, 'svc', 'sequence.ts'),
    [
      `import { existsSync } from 'node:fs';`,
      `import { join } from 'node:path';`,
      `import base from '${repo}services/sequence/0.3.0/sequence.ts';`,
      `import { defineService } from '${repo}kernel/service.ts';`,
      `export default defineService({ ...base, health: ${options.health} });`,
      '',
    ].join('\n'),
  );
  await writeFile(
    join(app, 'theseus.config.ts'),
    [
      `import { defineRelease } from '${repo}kernel/release/config.ts';`,
      `export default defineRelease({`,
      `  app: 'sequence',`,
      `  services: { sequence: { entry: './svc/sequence.ts', durability: 'reply' } },`,
      `  probationMs: 300,`,
      `  http: { listeners: [{ port: ${options.port}, host: '0.0.0.0', routes: [`,
      `    { method: 'GET', path: '/next', service: 'sequence', handler: 'httpNext' },`,
      `    { method: 'POST', path: '/increment', service: 'sequence', handler: 'httpIncrement' },`,
      `  ] }] },`,
      `});`,
      '',
    ].join('\n'),
  );
  return buildRelease({ configFile: join(app, 'theseus.config.ts'), outDir: join(app, 'releases'), log: () => undefined });
}

/** 0.3.0's code, unhealthy wherever `<deploy root>/fleet-unhealthy` exists (the kernel runs in its root). */
export function buildUnhealthyWhereMarked(dir: string, version: string): Promise<BuildResult> {
  return build03Variant(dir, version, {
    health: `() => existsSync(join(process.env.THESEUS_ROOT ?? '.', '${UNHEALTHY_MARKER}')) ? 'this host lacks what ${version} needs (${UNHEALTHY_MARKER} is in its deploy root)' : true`,
    port: FLEET_HTTP_PORT,
  });
}

/** 0.3.0's code, healthy, but serving on `port` instead of FLEET_HTTP_PORT. */
export function buildMovedPort(dir: string, version: string, port: number): Promise<BuildResult> {
  return build03Variant(dir, version, { health: '() => true', port });
}
