// `kernel release`: builds releases/<version>/ from a release configuration, as `mix release`
// does. Runs in the CLI's process.
//
//   releases/<version>/manifest.json             what the release holds, with every file's sha256
//   releases/<version>/plan.json                 the upgrade plan against the previous release
//   releases/<version>/services/<name>/<name>.mjs  each service, bundled by esbuild
//   releases/<version>/services/<name>/static/   the service's static/ folder, copied
//   releases/<version>/<app>-<version>.tar.gz    all of the above plus bin/kernel and the bundled
//                                                kernel: what a machine with only Node.js needs
//
// Builds are reproducible: the same sources give the same bytes, so "code changed" in a plan
// means the code really changed.

import { chmod, copyFile, cp, mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join, relative, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import semver from 'semver';
import { errorMessage, theseusError } from '../common/errors.ts';
import { PROTOCOL_VERSION } from '../common/protocol.ts';
import { defaultCacheDir, esbuildOptions, kernelModule, workerRuntimeBundle } from './bundler.ts';
import { DASHBOARD_SCRIPT, dashboardScript } from './dashboard-bundle.ts';
import { describeBundle } from './describe.ts';
import { loadReleaseConfig, type LoadedConfig } from './config.ts';
import { sha256 } from './fs-atomic.ts';
import { MANIFEST_SCHEMA_VERSION, type Manifest, type Plan } from './manifest.ts';
import { computePlan } from './plan.ts';
import { verifyReleaseDir } from './install.ts';
import { SIGNATURE_FILE, signManifest } from './signing.ts';
import { packTarball } from './tarball.ts';

export interface BuildOptions {
  configFile: string;
  /** Where releases/<version>/ goes. */
  outDir: string;
  /** The release to plan the upgrade from; default: the newest earlier one in outDir. */
  upfrom?: string;
  /** Put this Node binary into the tarball (Distillery's include_erts). */
  includeNode?: boolean;
  /** An ed25519 private key (PEM): sign manifest.json into manifest.sig. */
  signKey?: string;
  cacheDir?: string;
  log?: (line: string) => void;
}

export interface BuildResult {
  version: string;
  dir: string;
  manifest: Manifest;
  plan: Plan;
  tarball: string;
  /** False when the same version was already built from the same sources. */
  built: boolean;
  steps: Array<{ step: string; ms: number }>;
  totalMs: number;
}

const kernelRoot = fileURLToPath(new URL('../..', import.meta.url));

export async function buildRelease(options: BuildOptions): Promise<BuildResult> {
  const started = performance.now();
  const steps: BuildResult['steps'] = [];
  const log = options.log ?? (() => undefined);
  let mark = performance.now();
  const step = (name: string) => {
    const now = performance.now();
    steps.push({ step: name, ms: Math.round((now - mark) * 10) / 10 });
    mark = now;
  };

  const config = await loadReleaseConfig(options.configFile);
  const cacheDir = options.cacheDir ?? defaultCacheDir();
  const previous = await findPrevious(options.outDir, config, options.upfrom);
  step('config');
  log(`Building ${config.app} ${config.version} (${config.services.length} service${config.services.length === 1 ? '' : 's'})${previous ? `, upgrade from ${previous.version}` : ''}`);

  await mkdir(options.outDir, { recursive: true });
  const staging = join(options.outDir, `.build-${config.version}-${randomBytes(4).toString('hex')}`);
  await mkdir(staging, { recursive: true });
  try {
    // 1. Bundle each service, and copy its static files.
    const { build } = await import('esbuild');
    const bundles = await Promise.all(
      config.services.map(async (service) => {
        const file = `services/${service.name}/${service.name}.mjs`;
        let code: Uint8Array;
        try {
          const result = await build({ ...esbuildOptions(config.dir), entryPoints: [service.entry] });
          code = result.outputFiles![0]!.contents;
        } catch (error) {
          const first = (error as { errors?: Array<{ text: string }> }).errors?.[0];
          throw theseusError('E_BUNDLE_FAILED', service.entry, first?.text ?? errorMessage(error));
        }
        await mkdir(join(staging, dirname(file)), { recursive: true });
        await writeFile(join(staging, file), code);
        const staticSource = join(dirname(service.entry), 'static');
        let staticDir: string | null = null;
        if (await stat(staticSource).catch(() => null)) {
          staticDir = `services/${service.name}/static`;
          await cp(staticSource, join(staging, staticDir), { recursive: true, dereference: false });
        }
        return { name: service.name, file, sha256: sha256(code), staticDir };
      }),
    );
    step('bundle');
    log(`  bundled ${bundles.map((b) => `${b.name} (${b.sha256.slice(0, 12)})`).join(', ')}`);

    // 2. Learn what each bundle declares by loading it in a worker (never started).
    const runtime = await workerRuntimeBundle(cacheDir);
    const services: Manifest['services'] = {};
    const descriptors = await mapLimited(bundles, availableParallelism() * 2, async (bundle) => {
      return describeBundle({
        service: bundle.name,
        release: config.version,
        moduleUrl: pathToFileURL(join(staging, bundle.file)).href,
        runtimeFile: runtime.file,
        timeoutMs: 10_000,
      });
    });
    for (const [index, bundle] of bundles.entries()) {
      const { vsn, calls, casts, uses, migrations, hasTerminate, hasHealth, stateCheck, args, keyed } = descriptors[index]!;
      services[bundle.name] = {
        entry: bundle.file,
        sha256: bundle.sha256,
        vsn,
        calls: [...calls],
        casts: [...casts],
        uses: [...uses],
        migrations: migrations.map((m) => ({ ...m })),
        hasTerminate,
        hasHealth,
        stateCheck,
        staticDir: bundle.staticDir,
      };
      if (args) services[bundle.name]!.args = structuredClone(args) as Record<string, Array<Record<string, unknown>>>;
      if (keyed) services[bundle.name]!.keyed = true;
      const { pool, durability } = config.services.find((s) => s.name === bundle.name)!;
      if (pool) services[bundle.name]!.pool = pool;
      if (durability === 'reply') services[bundle.name]!.durability = durability;
      for (const dependency of uses) {
        if (config.services.some((s) => s.name === dependency)) continue;
        // The previous release had it: this one removes a service that is still used.
        if (previous && Object.hasOwn(previous.manifest.services, dependency)) throw theseusError('E_REMOVED_STILL_USED', config.version, dependency, bundle.name);
        throw theseusError('E_UNKNOWN_DEPENDENCY', `${bundle.name}@${config.version}`, dependency);
      }
    }
    assertPoolsCallable(services);
    for (const listener of config.http?.listeners ?? []) {
      for (const route of listener.routes) {
        const calls = services[route.service]!.calls;
        if (!calls.includes(route.handler)) {
          throw theseusError('E_CONFIG_INVALID', config.file, `the route ${route.method} ${route.path} names ${route.service}.${route.handler}, which is not a call of that service (its calls: ${calls.join(', ') || 'none'})`);
        }
      }
    }
    step('describe');

    // 3. The upgrade plan against the previous release.
    // The static files' hashes, so a release that changes only them is planned as a change.
    const staticFiles = await hashFiles(staging, (await listFilesSorted(staging)).filter((path) => /^services\/[^/]+\/static\//.test(path)));
    const plan = computePlan(previous?.manifest ?? null, { version: config.version, services, runtimeConfig: config.runtimeConfig, files: staticFiles });
    for (const [name, service] of Object.entries(services)) {
      const before = previous?.manifest.services[name];
      if (!before || Boolean(before.pool) === Boolean(service.pool)) continue;
      // A valid release, but not one a running kernel can swap to: say so now rather than at upgrade.
      const [from, to] = before.pool ? ['pooled', 'stateful'] : ['stateful', 'pooled'];
      plan.warnings.push(`${name} changes from ${from} to ${to}: 'kernel upgrade' from ${previous!.version} refuses that (E_POOLED_KIND_CHANGE); stop the kernel and start it on ${config.version} instead`);
    }
    await writeFile(join(staging, 'plan.json'), `${JSON.stringify(plan, null, 2)}\n`);
    for (const warning of plan.warnings) log(`  warning: ${warning}`);
    log(`  plan: ${describePlan(plan)}`);
    step('plan');

    // 4. The manifest, listing every file with its hash.
    const files = await hashFiles(staging, await listFilesSorted(staging));
    const manifest: Manifest = {
      schema: MANIFEST_SCHEMA_VERSION,
      app: config.app,
      version: config.version,
      protocol: PROTOCOL_VERSION,
      node: config.node,
      drainTimeoutMs: config.drainTimeoutMs,
      probationMs: config.probationMs,
      checkpointIntervalMs: config.checkpointIntervalMs,
      checkpointEveryChanges: config.checkpointEveryChanges,
      ...(config.precopy ? { precopy: config.precopy } : {}),
      maxRestarts: config.maxRestarts,
      restartWindowMs: config.restartWindowMs,
      spareWorkers: config.spareWorkers,
      hooks: config.hooks,
      runtimeConfig: config.runtimeConfig,
      ...(config.http ? { http: config.http } : {}),
      ...(config.admin !== null ? { admin: config.admin } : {}),
      services,
      files,
    };
    const manifestText = `${JSON.stringify(manifest, null, 2)}\n`;
    await writeFile(join(staging, 'manifest.json'), manifestText);
    if (options.signKey) {
      await writeFile(join(staging, SIGNATURE_FILE), await signManifest(manifestText, options.signKey));
      log(`  signed manifest.json with ${options.signKey}`);
    }
    step('manifest');

    // The same version already built: identical sources are fine, anything else needs a bump.
    const target = join(options.outDir, config.version);
    const tarballName = `${config.app}-${config.version}.tar.gz`;
    if (await stat(join(target, 'manifest.json')).catch(() => null)) {
      const existing = await verifyReleaseDir(target);
      if (existing.manifestSha256 !== sha256(manifestText)) {
        throw theseusError('E_VERSION_NOT_BUMPED', config.version, `${config.version} (already built, with different contents)`, config.packageFile);
      }
      log(`  ${config.version} was already built from the same sources; nothing changed`);
      return { version: config.version, dir: target, manifest, plan, tarball: join(target, tarballName), built: false, steps, totalMs: elapsed(started) };
    }

    // 5. The tarball: the release plus the bundled kernel and its launcher.
    await packDeployable(staging, config, manifest, sha256(manifestText), join(staging, tarballName), cacheDir, options.includeNode ?? false);
    step('tarball');

    await rename(staging, target);
    const totalMs = elapsed(started);
    const shown = relative(process.cwd(), target);
    log(`Built ${config.app} ${config.version} in ${totalMs} ms: ${shown.startsWith('..') ? target : shown}/ (${Object.keys(files).length + 1} files and ${tarballName})`);
    return { version: config.version, dir: target, manifest, plan, tarball: join(target, tarballName), built: true, steps, totalMs };
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

/**
 * A pooled service calls the stateful services it uses through the kernel's main thread, and
 * stateful services call pools; a pool that uses another pool is refused here, not at its first start.
 */
function assertPoolsCallable(services: Manifest['services']): void {
  for (const [name, service] of Object.entries(services)) {
    const pooled = service.pool ? service.uses.filter((dependency) => services[dependency]?.pool) : [];
    if (pooled.length > 0) throw theseusError('E_POOLED_USES', name, pooled.join(', '));
    if (service.pool && service.keyed) throw theseusError('E_POOLED_KEYED', name);
  }
}

/** Like Promise.all over `items`, with at most `limit` running at once. */
async function mapLimited<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await fn(items[index]!);
    }
  });
  await Promise.all(lanes);
  return results;
}

/**
 * The sha256 and size of each file, by its path. Built with fromEntries, so every path is an own
 * key even when it reads `__proto__` (an assignment would set the object's prototype instead and
 * leave the file unlisted).
 */
async function hashFiles(dir: string, paths: string[]): Promise<Manifest['files']> {
  const entries: Array<[string, { sha256: string; size: number }]> = [];
  for (const file of paths) {
    const contents = await readFile(join(dir, file));
    entries.push([file, { sha256: sha256(contents), size: contents.byteLength }]);
  }
  return Object.fromEntries(entries);
}

function elapsed(started: number): number {
  return Math.round(performance.now() - started);
}

function describePlan(plan: Plan): string {
  const parts = Object.entries(plan.services).map(([name, service]) => {
    switch (service.change) {
      case 'vsn':
        return `${name} state ${service.fromVsn} -> ${service.toVsn} (up ${service.up.join(', ')}; down ${service.down?.join(', ') ?? 'none'})${describeRewiring(service)}`;
      case 'code':
        return `${name} code only${describeRewiring(service)}`;
      case 'added':
        if (plan.from === null) return `${name} added`;
        return `${name} added (vsn ${service.toVsn}: starts from init(), or from the state a deploy root kept of it)`;
      case 'removed':
        return `${name} removed (drained at the switch; its last state is kept for a release that brings it back)`;
      case 'config':
        return `${name} config changed (same code, swapped in for its new ctx.config or static files)`;
      default:
        return `${name} ${service.change}`;
    }
  });
  return `${plan.from ?? 'first release'} -> ${plan.to}: ${parts.join('; ')}`;
}

/** "; now uses audit; no longer uses cache", or nothing when the code's uses did not change. */
function describeRewiring(service: Plan['services'][string]): string {
  if (!service.rewired) return '';
  const parts = [service.rewired.uses.length > 0 ? `now uses ${service.rewired.uses.join(', ')}` : '', service.rewired.stopsUsing.length > 0 ? `no longer uses ${service.rewired.stopsUsing.join(', ')}` : ''];
  return `; ${parts.filter(Boolean).join('; ')}`;
}

async function findPrevious(outDir: string, config: LoadedConfig, upfrom: string | undefined): Promise<{ version: string; manifest: Manifest } | null> {
  const built = (await readdir(outDir).catch(() => [] as string[])).filter((name) => semver.valid(name));
  const withManifest: string[] = [];
  for (const version of built) if (await stat(join(outDir, version, 'manifest.json')).catch(() => null)) withManifest.push(version);
  if (upfrom !== undefined) {
    if (!withManifest.includes(upfrom)) throw theseusError('E_UPFROM_NOT_BUILT', upfrom, outDir, withManifest.sort(semver.compare).join(', '));
    if (!semver.gt(config.version, upfrom)) throw theseusError('E_VERSION_NOT_BUMPED', config.version, upfrom, config.packageFile);
    return { version: upfrom, manifest: (await verifyReleaseDir(join(outDir, upfrom))).manifest };
  }
  const newer = withManifest.filter((version) => semver.gt(version, config.version)).sort(semver.rcompare)[0];
  if (newer) throw theseusError('E_VERSION_NOT_BUMPED', config.version, newer, config.packageFile);
  const earlier = withManifest.filter((version) => semver.lt(version, config.version)).sort(semver.rcompare)[0];
  if (!earlier) return null;
  return { version: earlier, manifest: (await verifyReleaseDir(join(outDir, earlier))).manifest };
}

async function listFilesSorted(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((entry) => entry.isFile())
    .map((entry) => relative(dir, join(entry.parentPath ?? (entry as unknown as { path: string }).path, entry.name)).split(sep).join('/'))
    .sort();
}

const launcher = `#!/bin/sh
# Theseus launcher for this deploy root: bin/kernel <verb> (bin/kernel --help lists them).
# Uses the Node.js bundled in node/ when the release was built with --include-node.
set -e
# Shell built-ins only: this must work with a bare PATH (the bundled node needs nothing else).
case "$0" in */*) here="\${0%/*}" ;; *) here=. ;; esac
root="$(cd "$here/.." && pwd)"
node="$root/node/bin/node"
[ -x "$node" ] || node="\${THESEUS_NODE:-node}"
THESEUS_ROOT="$root" exec "$node" "$root/lib/kernel.mjs" "$@"
`;

interface KernelBundles {
  kernel: Uint8Array;
  worker: Uint8Array;
  poolWorker: Uint8Array;
  /** Scans and extracts release archives off the kernel's main thread (kernel/release/unpack-worker.ts). */
  unpackWorker: Uint8Array;
  /** The dashboard page's script (uPlot inside), which the admin listener serves. */
  dashboard: Uint8Array;
  /** piscina's own files, for lib/node_modules/piscina/, by path inside that folder. */
  piscina: Array<[path: string, contents: Uint8Array]>;
}

let kernelBundles: Promise<KernelBundles> | null = null;

/**
 * The kernel, the worker runtime and the pool worker runtime as three self-contained files, and
 * piscina beside them, built once per process.
 *
 * piscina stays a package of its own rather than being bundled into kernel.mjs: it starts each
 * pool thread from its own worker.js, found next to its module (`__dirname`), and a bundled copy
 * would have neither that file nor `__dirname` (an ES module has none).
 */
function bundleKernel(): Promise<KernelBundles> {
  kernelBundles ??= (async () => {
    const { build } = await import('esbuild');
    // THESEUS_FAULTS is for tests only: a deployed kernel reads it as empty, whatever is set. The
    // kernel's version is written in: a deploy root has no package.json of Theseus to read it from.
    const { version } = JSON.parse(await readFile(join(kernelRoot, 'package.json'), 'utf8')) as { version: string };
    const define = { 'process.env.THESEUS_FAULTS': '""', 'process.env.THESEUS_KERNEL_VERSION': JSON.stringify(version) };
    const base = { ...esbuildOptions(kernelRoot), external: ['esbuild', 'tsx', 'piscina'], define };
    const [kernel, worker, poolWorker, unpackWorker, piscina, dashboard] = await Promise.all([
      build({ ...base, entryPoints: [kernelModule('cli/main')] }),
      build({ ...base, entryPoints: [kernelModule('worker/entry')] }),
      build({ ...base, entryPoints: [kernelModule('worker/pool-entry')] }),
      build({ ...base, entryPoints: [kernelModule('release/unpack-worker')] }),
      piscinaFiles(),
      dashboardScript(),
    ]);
    const contents = (result: { outputFiles?: Array<{ contents: Uint8Array }> }) => result.outputFiles![0]!.contents;
    return { kernel: contents(kernel), worker: contents(worker), poolWorker: contents(poolWorker), unpackWorker: contents(unpackWorker), piscina, dashboard };
  })();
  return kernelBundles;
}

/** What piscina needs at run time: its package.json, licence and compiled JavaScript (no maps or types). */
async function piscinaFiles(): Promise<Array<[string, Uint8Array]>> {
  // The package's "exports" hide package.json, so start from its main file (dist/main.js).
  const packageDir = dirname(dirname(createRequire(import.meta.url).resolve('piscina')));
  const wanted = (await listFilesSorted(packageDir)).filter((file) => file === 'package.json' || file === 'LICENSE' || /^dist\/.+\.(?:js|mjs)$/.test(file));
  return Promise.all(wanted.map(async (file): Promise<[string, Uint8Array]> => [file, await readFile(join(packageDir, file))]));
}

async function packDeployable(
  releaseDir: string,
  config: LoadedConfig,
  manifest: Manifest,
  manifestSha256: string,
  tarball: string,
  cacheDir: string,
  includeNode: boolean,
): Promise<void> {
  const image = join(cacheDir, `image-${randomBytes(6).toString('hex')}`);
  try {
    const releasePath = `releases/${config.version}`;
    await mkdir(join(image, releasePath), { recursive: true });
    const signed = await stat(join(releaseDir, SIGNATURE_FILE)).catch(() => null);
    const files = ['manifest.json', ...(signed ? [SIGNATURE_FILE] : []), ...Object.keys(manifest.files)];
    for (const file of files) {
      await mkdir(dirname(join(image, releasePath, file)), { recursive: true });
      await copyFile(join(releaseDir, file), join(image, releasePath, file));
    }
    const { kernel, worker, poolWorker, unpackWorker, piscina, dashboard } = await bundleKernel();
    await mkdir(join(image, 'lib'), { recursive: true });
    await writeFile(join(image, 'lib', 'kernel.mjs'), kernel);
    await writeFile(join(image, 'lib', 'worker.mjs'), worker);
    await writeFile(join(image, 'lib', 'pool-worker.mjs'), poolWorker);
    await writeFile(join(image, 'lib', 'unpack-worker.mjs'), unpackWorker);
    await writeFile(join(image, 'lib', DASHBOARD_SCRIPT), dashboard);
    const piscinaEntries = piscina.map(([file]) => `lib/node_modules/piscina/${file}`);
    for (const [index, [, contents]] of piscina.entries()) {
      await mkdir(dirname(join(image, piscinaEntries[index]!)), { recursive: true });
      await writeFile(join(image, piscinaEntries[index]!), contents);
    }
    await mkdir(join(image, 'bin'), { recursive: true });
    await writeFile(join(image, 'bin', 'kernel'), launcher);
    await chmod(join(image, 'bin', 'kernel'), 0o755);
    // A fresh deploy root boots this release: it is the permanent one in the archive's registry.
    const registry = {
      schema: 1,
      releases: [{ version: config.version, status: 'permanent', manifestSha256, installedAt: new Date(0).toISOString() }],
    };
    await writeFile(join(image, 'releases', 'RELEASES'), `${JSON.stringify(registry, null, 2)}\n`);
    const entries = ['bin/kernel', 'lib/kernel.mjs', 'lib/worker.mjs', 'lib/pool-worker.mjs', 'lib/unpack-worker.mjs', `lib/${DASHBOARD_SCRIPT}`, ...piscinaEntries, 'releases/RELEASES', ...files.map((file) => `${releasePath}/${file}`)];
    if (includeNode) {
      await mkdir(join(image, 'node', 'bin'), { recursive: true });
      await copyFile(process.execPath, join(image, 'node', 'bin', 'node'));
      await chmod(join(image, 'node', 'bin', 'node'), 0o755);
      entries.push('node/bin/node');
    }
    await packTarball(image, entries, tarball);
  } finally {
    await rm(image, { recursive: true, force: true });
  }
}
