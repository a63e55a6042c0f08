// Turns a service's TypeScript entry into one self-contained ES module with esbuild, and builds
// the thread runtimes (service worker, pool thread, unpack worker) the same way. Used by the
// release builder in the CLI's process, and by the kernel's main thread for services given as
// source in development. Outputs are named by their sha256, so a file never changes once written
// and two kernels can share a cache directory. A deployed release runs prebuilt files and never
// loads esbuild.

import { createHash } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { basename, dirname, extname, join, resolve, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { BuildOptions } from 'esbuild';
import { errorMessage, theseusError } from '../common/errors.ts';

export interface Bundle {
  /** Absolute path of the bundled module. */
  file: string;
  /** file: URL, what a worker imports. */
  url: string;
  sha256: string;
}

/** The options that make builds reproducible: same sources, same bytes. */
export function esbuildOptions(workingDir: string): BuildOptions {
  return {
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    write: false,
    logLevel: 'silent',
    legalComments: 'none',
    sourcemap: false,
    // Paths in the output's comments are relative to this, so the bytes do not depend on where
    // the checkout lives.
    absWorkingDir: workingDir,
    // ESM bundles of CommonJS dependencies call require(); give them one.
    banner: { js: "import { createRequire as __theseusRequire } from 'node:module'; const require = __theseusRequire(import.meta.url);" },
  };
}

export function defaultCacheDir(): string {
  return join(tmpdir(), `theseus-${userInfo().uid}`, 'bundles');
}

const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/**
 * A kernel module by its path inside kernel/ without extension (`worker/entry`), in the form this
 * module runs from: kernel/worker/entry.ts in the repo, dist/worker/entry.js in the installed
 * package, which ships the compiled JavaScript and no sources. esbuild bundles either.
 */
export function kernelModule(path: string): string {
  const here = fileURLToPath(import.meta.url);
  return join(dirname(dirname(here)), `${path}${extname(here)}`);
}

/** Bundles built in this process, reused while none of their input files has changed. */
const recentBundles = new Map<string, { inputs: Array<[file: string, mtimeMs: number, size: number]>; bundle: Bundle }>();

/**
 * Synchronous on purpose. A service that imports a library has hundreds of inputs (TypeBox alone
 * is some 200 modules), and this runs in an upgrade's check on the kernel's main thread while it
 * serves: one awaited stat per file waited its turn behind the callers' messages each time, and a
 * check under 1000 callers took 12 to 18 s instead of a few hundred ms. A few hundred stat calls
 * cost about a millisecond in one go.
 */
function inputsUnchanged(inputs: Array<[string, number, number]>): boolean {
  for (const [file, mtimeMs, size] of inputs) {
    const info = statSync(file, { throwIfNoEntry: false });
    if (!info || info.mtimeMs !== mtimeMs || info.size !== size) return false;
  }
  return true;
}

export async function bundleEntry(entry: string, cacheDir: string, label = basename(entry, extname(entry))): Promise<Bundle> {
  const absolute = resolve(entry);
  try {
    await stat(absolute);
  } catch {
    throw theseusError('E_BUNDLE_FAILED', entry, 'the file does not exist');
  }
  const cacheKey = `${cacheDir}\0${label}\0${absolute}`;
  const recent = recentBundles.get(cacheKey);
  // The output is checked too: a cleaner of the temp folder (systemd-tmpfiles, a person) may have
  // removed the cache under a kernel that has run for days.
  if (recent && inputsUnchanged(recent.inputs) && existsSync(recent.bundle.file)) return recent.bundle;

  let code: Uint8Array;
  let inputFiles: string[];
  try {
    // Loaded on first use: a deployed kernel runs prebuilt bundles and ships without esbuild.
    const { build } = await import('esbuild');
    const result = await build({ ...esbuildOptions(projectRoot), entryPoints: [absolute], metafile: true });
    code = result.outputFiles![0]!.contents;
    inputFiles = Object.keys(result.metafile!.inputs).map((file) => resolve(projectRoot, file));
  } catch (error) {
    const failure = error as { errors?: Array<{ text: string; location?: { file: string; line: number } | null }> };
    const first = failure.errors?.[0];
    const reason = first ? `${first.location ? `${first.location.file}:${first.location.line}: ` : ''}${first.text}` : errorMessage(error);
    throw theseusError('E_BUNDLE_FAILED', entry, reason);
  }
  const sha256 = createHash('sha256').update(code).digest('hex');
  const file = join(cacheDir, `${label}-${sha256.slice(0, 16)}.mjs`);
  await writeOnce(file, code);
  const bundle = { file, url: pathToFileURL(file).href, sha256 };
  // Synchronous for the reason inputsUnchanged is.
  const inputs = inputFiles.map((input): [string, number, number] => {
    const info = statSync(input);
    return [input, info.mtimeMs, info.size];
  });
  recentBundles.set(cacheKey, { inputs, bundle });
  return bundle;
}

/** The runtime bundles built so far in this process, by the name a release ships them under. */
const runtimes = new Map<string, Promise<Bundle>>();

/**
 * A runtime bundle, built once per process (or prebuilt in a deployed release), and built again
 * if its file was removed from the cache since (see bundleEntry), once.
 */
async function rememberedRuntime(prebuiltName: string, entry: string, label: string, cacheDir: string): Promise<Bundle> {
  const load = () => {
    let pending = runtimes.get(prebuiltName);
    if (!pending) {
      pending = runtimeBundle(prebuiltName, entry, label, cacheDir).catch((error: unknown) => {
        runtimes.delete(prebuiltName);
        throw error;
      });
      runtimes.set(prebuiltName, pending);
    }
    return pending;
  };
  const bundle = await load();
  // Only the cache is built again. A deployed release's own runtime file that went missing is a
  // broken deploy root, which the worker that cannot load it reports.
  if (existsSync(bundle.file) || !bundle.file.startsWith(resolve(cacheDir) + sep)) return bundle;
  runtimes.delete(prebuiltName);
  return load();
}

/**
 * The bundled worker entry (kernel/worker/entry.ts). A deployed release ships it prebuilt as
 * worker.mjs next to the bundled kernel.
 */
export function workerRuntimeBundle(cacheDir: string): Promise<Bundle> {
  return rememberedRuntime('worker.mjs', 'worker/entry', 'theseus-worker', cacheDir);
}

/**
 * The bundled task module of pooled services' threads (kernel/worker/pool-entry.ts), which
 * piscina's own worker imports. A deployed release ships it prebuilt as pool-worker.mjs.
 */
export function poolRuntimeBundle(cacheDir: string): Promise<Bundle> {
  return rememberedRuntime('pool-worker.mjs', 'worker/pool-entry', 'theseus-pool-worker', cacheDir);
}

/**
 * The bundled unpack worker (kernel/release/unpack-worker.ts), which scans and extracts release
 * archives off the main thread. A deployed release ships it prebuilt as unpack-worker.mjs.
 */
export function unpackRuntimeBundle(cacheDir: string): Promise<Bundle> {
  return rememberedRuntime('unpack-worker.mjs', 'release/unpack-worker', 'theseus-unpack-worker', cacheDir);
}

/** `entry` is a kernelModule() path. */
async function runtimeBundle(prebuiltName: string, entry: string, label: string, cacheDir: string): Promise<Bundle> {
  return (await prebuiltRuntime(prebuiltName)) ?? bundleEntry(kernelModule(entry), cacheDir, label);
}

/** A runtime file next to this module: only in a deployed release, where this module is lib/kernel.mjs. */
async function prebuiltRuntime(name: string): Promise<Bundle | null> {
  const file = fileURLToPath(new URL(`./${name}`, import.meta.url));
  const contents = await readFile(file).catch(() => null);
  if (contents === null) return null;
  return { file, url: pathToFileURL(file).href, sha256: createHash('sha256').update(contents).digest('hex') };
}

async function writeOnce(file: string, contents: Uint8Array): Promise<void> {
  try {
    await stat(file);
    return; // named by content hash: an existing file already holds these bytes
  } catch {
    // not there yet
  }
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  const temporary = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  await writeFile(temporary, contents, { mode: 0o600 });
  await rename(temporary, file);
}
