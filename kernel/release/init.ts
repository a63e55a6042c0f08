// `kernel init`: writes the release configuration, with a comment on every option, as
// `mix release.init` writes rel/config.exs. Runs in the CLI's process.

import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { basename, join, relative } from 'node:path';
import { theseusError } from '../common/errors.ts';
import { DEFAULT_CONFIG_FILE, DEFAULT_DRAIN_TIMEOUT_MS, DEFAULT_HTTP_TIMEOUT_MS, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_REPLY_BYTES, DEFAULT_NODE_RANGE, DEFAULT_PROBATION_MS, DEFAULT_SPARE_WORKERS } from './config.ts';

/** Finds `services/<name>/index.ts` (or `<name>.ts`) under `dir`, the usual layout. */
async function discoverServices(dir: string): Promise<Array<{ name: string; entry: string }>> {
  const found: Array<{ name: string; entry: string }> = [];
  const names = await readdir(join(dir, 'services')).catch(() => [] as string[]);
  for (const name of names.sort()) {
    if (!/^[A-Za-z][A-Za-z0-9_-]{0,63}$/.test(name)) continue;
    for (const candidate of ['index.ts', `${name}.ts`, 'index.js', `${name}.js`]) {
      if (await stat(join(dir, 'services', name, candidate)).catch(() => null)) {
        found.push({ name, entry: `./${relative(dir, join(dir, 'services', name, candidate))}` });
        break;
      }
    }
  }
  return found;
}

export function configTemplate(app: string, services: Array<{ name: string; entry: string }>, importFrom: string): string {
  const serviceLines =
    services.length > 0
      ? services.map((s) => `    ${s.name}: { entry: '${s.entry}' },`).join('\n')
      : `    // No services/<name>/index.ts was found. Add each service, e.g.:\n    // sequence: { entry: './services/sequence/index.ts' },`;
  return `// Release configuration for ${app}, written by \`kernel init\`. \`kernel release\` reads it.
// The release version is not set here: it is the "version" of the nearest package.json, so bump
// it there before each release (a release that is not above the previous one is refused).
import { defineRelease } from '${importFrom}';

export default defineRelease({
  // The application's name: the tarball is releases/<version>/<app>-<version>.tar.gz.
  app: '${app}',

  // The services in the release, by name. Each entry is the module whose default export is
  // defineService({...}); it is bundled with esbuild into one file. A static/ folder next to the
  // entry is copied into the release, and the service finds its copy at ctx.staticDir. A
  // stateless service can run on a pool of threads instead: { entry: '...', pool: { size: 4 } }.
  // A service whose answers must survive a kill -9 (an ID generator, a ledger) takes
  // { entry: '...', durability: 'reply' }: each reply waits until the state that produced it is on
  // disk (one write covers every call that finished meanwhile, so the cost per call falls with load).
  services: {
${serviceLines}
  },

  // How long a service may take to finish the handler it is running when an upgrade suspends it
  // (messages waiting behind it move to the new code, they are not waited for). Past it, the
  // upgrade rolls back and the old code keeps serving.
  drainTimeoutMs: ${DEFAULT_DRAIN_TIMEOUT_MS},

  // After an upgrade switches to this release, how long the kernel watches it before making it
  // permanent. A service whose health() fails in that window, or whose worker dies, reverts the
  // upgrade. 0 turns probation off.
  probationMs: ${DEFAULT_PROBATION_MS},

  // Durable state (durability 'periodic', the default): every service's state is checkpointed to
  // var/state/ at stop, after each committed upgrade, every checkpointIntervalMs and every
  // checkpointEveryChanges state changes (0 turns either off). After a crash of the whole kernel,
  // what changed since the last checkpoint is lost: lower values lose less and cost more. A
  // service with durability 'reply' loses nothing it answered, and ignores these two.
  checkpointIntervalMs: 1000,
  checkpointEveryChanges: 1000,

  // A service with keyed: true has its store copied to the new worker in rounds while the old one
  // still serves; the pause carries only the keys written since. The copy stops once a round sent
  // at most stopAtKeys keys, or after maxRounds rounds (0 turns the copy off).
  // precopy: { maxRounds: 8, stopAtKeys: 512 },

  // Supervision: a crashed service worker is restarted with its last state, at most maxRestarts
  // times within restartWindowMs; past that the service is marked failed.
  maxRestarts: 3,
  restartWindowMs: 5000,

  // Worker threads kept booted (the runtime, no service code), about 10 MB of memory each. An
  // upgrade's new workers start from them and only load their service's code; they are replaced
  // once the upgrade is over. 0 boots every new worker from nothing.
  spareWorkers: ${DEFAULT_SPARE_WORKERS},

  // The Node.js versions the release may run on (a semver range), checked before it boots.
  node: '${DEFAULT_NODE_RANGE}',

  // Shell commands run at these points, in the deploy root, in order. A failing pre-hook stops
  // the operation. (Hooks are recorded in the release now and run by the kernel program.)
  hooks: {
    preStart: [],
    postStart: [],
    preStop: [],
    postStop: [],
    preUpgrade: [],
    postUpgrade: [],
  },

  // Plain data handed to every service as ctx.config, taken from the release being run: an
  // upgrade brings its own.
  runtimeConfig: {},

  // An HTTP front door: sockets the kernel's main thread owns, with routes to service calls. The
  // handler receives { method, path, query, headers, body } and replies { status, headers, body }.
  // The sockets stay open across upgrades; only the code behind the routes changes.
  // http: {
  //   listeners: [
  //     { port: 8080, host: '127.0.0.1', routes: [{ method: 'GET', path: '/next', service: 'sequence', handler: 'httpNext' }] },
  //   ],
  //   maxBodyBytes: ${DEFAULT_MAX_BODY_BYTES},     // larger request bodies get 413
  //   maxReplyBytes: ${DEFAULT_MAX_REPLY_BYTES},   // a larger reply is not sent: 502 (replies are sent whole)
  //   requestTimeoutMs: ${DEFAULT_HTTP_TIMEOUT_MS},  // a handler slower than this gets the client a 504
  // },

  // The admin listener: Prometheus' /metrics and a live dashboard, read-only, behind the token in
  // var/admin-token ('kernel dashboard' prints both). 127.0.0.1 and any free port unless set here;
  // reach it from elsewhere with ssh -L. false turns it off.
  // admin: { host: '127.0.0.1', port: 9464 },
});
`;
}

export async function writeInitialConfig(dir: string, options: { file?: string; force?: boolean; importFrom?: string } = {}): Promise<{ file: string; services: string[] }> {
  const file = join(dir, options.file ?? DEFAULT_CONFIG_FILE);
  if (!options.force && (await stat(file).catch(() => null))) {
    throw theseusError('E_CONFIG_EXISTS', file);
  }
  const pkg = JSON.parse((await readFile(join(dir, 'package.json'), 'utf8').catch(() => '{}')) as string) as { name?: string };
  const app = (pkg.name ?? basename(dir)).replace(/^@[^/]+\//, '').replace(/[^A-Za-z0-9_-]/g, '-').replace(/^[^A-Za-z]+/, '') || 'app';
  const services = await discoverServices(dir);
  await writeFile(file, configTemplate(app, services, options.importFrom ?? 'theseus/release'));
  return { file, services: services.map((s) => s.name) };
}
