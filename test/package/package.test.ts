// The package as a project gets it: `npm pack` in the repo (which compiles dist/ through npm's
// prepare), then `npm install <tarball>` into a fresh plain project that has no tsx and no
// TypeScript loader. There the tutorial (services/README.md) runs through the installed `kernel` bin, and a
// plain .mjs file imports { Kernel } from 'theseus'. Nothing in the project points back at the
// repo: every Theseus file it loads comes out of the tarball.

import assert from 'node:assert/strict';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { access, lstat, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { after, test } from 'node:test';
import { extract } from 'tar';
import { root as repo } from '../helpers.ts';
import { tempDir } from '../release/helpers.ts';

const STEP_TIMEOUT_MS = 180_000;

/** The temporary folders this file made, removed at its end. */
const scratch: string[] = [];

/**
 * The environment of every command run here: no Node options (a `--import tsx` there would hide
 * a missing build), and none of the npm_* variables that `npm test` sets, which would point npm
 * at the repo instead of the project it runs in.
 */
const cleanEnv: NodeJS.ProcessEnv = Object.fromEntries(
  Object.entries({ ...process.env, THESEUS_ROOT: '' }).filter(([name]) => name !== 'NODE_OPTIONS' && !name.toLowerCase().startsWith('npm_')),
);

function run(command: string, args: string[], cwd: string): SpawnSyncReturns<string> & { output: string } {
  const result = spawnSync(command, args, { cwd, encoding: 'utf8', timeout: STEP_TIMEOUT_MS, env: cleanEnv });
  return Object.assign(result, { output: `${result.stdout ?? ''}\n${result.stderr ?? ''}${result.error ? `\n${result.error.message}` : ''}` });
}

function succeeds(command: string, args: string[], cwd: string): string {
  const result = run(command, args, cwd);
  assert.equal(result.status, 0, `${command} ${args.join(' ')} failed in ${cwd}:\n${result.output}`);
  return result.output;
}

/** The project's own `kernel` bin; `--no` keeps npx from fetching anything if it were missing. */
function kernel(project: string, ...args: string[]): string {
  return succeeds('npx', ['--no', '--', 'kernel', ...args], project);
}

interface Packed {
  tarball: string;
  files: string[];
  size: number;
  unpackedSize: number;
}

async function pack(): Promise<Packed> {
  const destination = await tempDir('theseus-packed-');
  scratch.push(destination);
  const result = run('npm', ['pack', '--json', '--pack-destination', destination], repo);
  assert.equal(result.status, 0, result.output);
  const [report] = JSON.parse(result.stdout) as Array<{ filename: string; size: number; unpackedSize: number; files: Array<{ path: string }> }>;
  return { tarball: join(destination, report!.filename), files: report!.files.map((file) => file.path).sort(), size: report!.size, unpackedSize: report!.unpackedSize };
}

/**
 * A lockfile that lists the repo's locked runtime dependencies (dev ones left out) as extraneous
 * entries: `npm install --offline <tarball>` then finds each of the package's dependencies
 * already in the tree, takes its tarball from npm's cache (where the repo's `npm ci` put it) and
 * needs no registry metadata, so the install works offline. npm drops whatever the package does
 * not need.
 */
async function offlineLock(project: string, name: string): Promise<void> {
  const repoLock = JSON.parse(await readFile(join(repo, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean; link?: boolean }> };
  const packages: Record<string, unknown> = { '': { name, version: '0.1.0' } };
  for (const [path, entry] of Object.entries(repoLock.packages)) {
    if (path.startsWith('node_modules/') && !entry.dev && !entry.link) packages[path] = { ...entry, extraneous: true };
  }
  await writeFile(join(project, 'package-lock.json'), `${JSON.stringify({ name, version: '0.1.0', lockfileVersion: 3, requires: true, packages }, null, 2)}\n`);
}

interface Installed {
  project: string;
  /** What `npm install` printed. */
  npmOutput: string;
}

/**
 * The project reviews the two install scripts npm would warn about, as the README advises. It
 * denies esbuild's: that script only checks and links the binary that esbuild's platform package
 * already ships (or downloads it, where that package is missing). And it denies Theseus's own
 * prepare, which npm lists for a package from a tarball but never runs for one: the tarball holds
 * dist/ already. (From git, npm must run prepare to build dist/; there it is approved.)
 */
async function install(packed: Packed): Promise<Installed> {
  const folder = await tempDir('theseus-package-');
  scratch.push(folder);
  const project = join(folder, 'sequence');
  await mkdir(project);
  const manifest = { name: 'sequence', version: '0.1.0', type: 'module', private: true, allowScripts: { esbuild: false, [`file:${packed.tarball}`]: false } };
  await writeFile(join(project, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  await offlineLock(project, 'sequence');
  const result = run('npm', ['install', '--offline', '--no-audit', '--no-fund', packed.tarball], project);
  if (result.status !== 0 && /ENOTCACHED/.test(result.output)) {
    assert.fail(`npm's cache lacks a tarball this offline install needs; run \`npm ci\` in the repo first, which fills it:\n${result.output}`);
  }
  assert.equal(result.status, 0, `npm install ${packed.tarball} failed in ${project}:\n${result.output}`);
  return { project, npmOutput: result.output };
}

const packed = pack();
const installed = packed.then(install);
// Each test awaits these and fails with their error; until one does, a failure is not unhandled.
packed.catch(() => undefined);
installed.catch(() => undefined);
const running: string[] = [];

after(async () => {
  // Never leave a kernel behind, whatever failed.
  for (const root of running) spawnSync(join(root, 'bin', 'kernel'), ['stop'], { encoding: 'utf8', timeout: 60_000, env: cleanEnv });
  const project = (await installed.catch(() => null))?.project;
  if (project) spawnSync('npx', ['--no', '--', 'kernel', 'stop'], { cwd: project, encoding: 'utf8', timeout: 60_000, env: cleanEnv });
  // Each project holds its own node_modules, esbuild's binary included: some 30 MB a run.
  for (const folder of scratch) await rm(folder, { recursive: true, force: true });
});

function sequenceService(release: string): string {
  const reply = release === '0.1.0' ? 'state' : '`The next number is ${state}`';
  return `// Release ${release} of the sequence service, as the tutorial writes it.
import { defineService } from 'theseus/service';

export default defineService({
  vsn: '0',
  init: () => 456,
  calls: {
    nextNumber: ({ state }) => ({ reply: ${reply}, state: state + 1 }),
  },
  casts: {
    incrementNumber: ({ state }, delta: number) => ({ state: state + delta }),
  },
});
`;
}

/** State vsn "1" ({ currentNumber, delta }), with a migration each way from vsn "0". */
const sequenceWithDelta = `import { defineService } from 'theseus/service';

interface State {
  currentNumber: number;
  delta: number;
}

export default defineService({
  vsn: '1',
  init: (): State => ({ currentNumber: 456, delta: 1 }),
  calls: {
    nextNumber: ({ state }) => ({ reply: \`The next number is \${state.currentNumber}\`, state: { ...state, currentNumber: state.currentNumber + state.delta } }),
  },
  casts: {
    incrementNumber: ({ state }, delta: number) => ({ state: { ...state, delta } }),
  },
  migrations: [{ from: '0', to: '1', up: (currentNumber: number): State => ({ currentNumber, delta: 1 }), down: (state: State) => state.currentNumber }],
});
`;

test("every locked dependency with an install script is reviewed in the repo's allowScripts", async () => {
  // Otherwise `npm ci` warns about it on every install, CI's included.
  const manifest = JSON.parse(await readFile(join(repo, 'package.json'), 'utf8')) as { allowScripts?: Record<string, boolean> };
  const lock = JSON.parse(await readFile(join(repo, 'package-lock.json'), 'utf8')) as { packages: Record<string, { hasInstallScript?: boolean }> };
  const withScripts = Object.entries(lock.packages).filter(([, entry]) => entry.hasInstallScript).map(([path]) => path.slice(path.lastIndexOf('node_modules/') + 'node_modules/'.length));
  assert.ok(withScripts.includes('esbuild'), 'the lockfile records install scripts');
  const unreviewed = withScripts.filter((name) => typeof manifest.allowScripts?.[name] !== 'boolean');
  assert.deepEqual(unreviewed, [], 'add each to allowScripts in package.json, true or false, once its script is read');
});

test('npm pack ships compiled JavaScript with its types, the bin, and no TypeScript source', async (t) => {
  const { files, size, unpackedSize } = await packed;
  t.diagnostic(`package: ${files.length} files, ${size} bytes packed, ${unpackedSize} bytes unpacked`);
  const unexpected = files.filter((file) => !['README.md', 'package.json', 'kernel/index.js'].includes(file) && !/^dist\/.+\.(?:js|d\.ts)$/.test(file));
  assert.deepEqual(unexpected, [], 'only dist/*.js, dist/*.d.ts, the bin, the README and package.json');
  const manifest = JSON.parse(await readFile(join(repo, 'package.json'), 'utf8')) as { exports: Record<string, string | Record<string, string>>; bin: Record<string, string> };
  const targets = Object.values(manifest.exports).flatMap((target) => (typeof target === 'string' ? [target] : Object.values(target)));
  for (const target of [...targets, ...Object.values(manifest.bin)]) {
    assert.ok(files.includes(target.replace(/^\.\//, '')), `${target} is in the package`);
  }
  // The thread runtimes the kernel bundles at run time, compiled.
  for (const runtime of ['dist/worker/entry.js', 'dist/worker/pool-entry.js', 'dist/release/unpack-worker.js', 'dist/cli/main.js']) {
    assert.ok(files.includes(runtime), `${runtime} is in the package`);
  }
});

test('the tarball installs offline into a plain project, which has no tsx', async () => {
  const { project } = await installed;
  const theseus = join(project, 'node_modules', 'theseus');
  assert.ok((await lstat(theseus)).isDirectory(), 'node_modules/theseus is a folder of its own, not a link to the repo');
  const shipped = await readdir(theseus, { recursive: true });
  assert.deepEqual(shipped.filter((file) => file.endsWith('.ts') && !file.endsWith('.d.ts')), [], 'no TypeScript source was installed');
  assert.equal(await stat(join(project, 'node_modules', 'tsx')).catch(() => null), null, 'tsx is not installed');
  const loader = run(process.execPath, ['--input-type=module', '-e', "await import('tsx')"], project);
  assert.notEqual(loader.status, 0, 'the project cannot load tsx');
});

test("with esbuild's install script denied, npm has nothing to warn about and esbuild still works", async () => {
  const { project, npmOutput } = await installed;
  assert.doesNotMatch(npmOutput, /install-scripts|allowScripts/, 'npm warned about an unreviewed install script');
  // The script, had it run, would have put the native binary in place of this Node launcher.
  const launcher = await readFile(join(project, 'node_modules', 'esbuild', 'bin', 'esbuild'), 'utf8');
  assert.match(launcher, /^#!\/usr\/bin\/env node/, "esbuild's install script ran");
  const transformed = run(process.execPath, ['--input-type=module', '-e', "const { transform } = await import('esbuild'); console.log((await transform('const n: number = 1', { loader: 'ts' })).code)"], project);
  assert.equal(transformed.status, 0, transformed.output);
  assert.match(transformed.stdout, /^const n = 1;$/m);
});

test("the tutorial through the installed bin: init, release, start, upgrade with a migration, stop", async () => {
  const { project } = await installed;
  // Run through npx, the help writes its commands the way that runs here.
  assert.match(kernel(project, '--help'), /Usage: npx kernel <verb>/);
  // Read from the installed package's package.json, which the compiled CLI finds from dist/.
  const { version } = JSON.parse(await readFile(join(project, 'node_modules', 'theseus', 'package.json'), 'utf8')) as { version: string };
  assert.equal(kernel(project, 'version').trim(), version);
  await mkdir(join(project, 'services', 'sequence'), { recursive: true });
  await writeFile(join(project, 'services', 'sequence', 'index.ts'), sequenceService('0.1.0'));
  assert.match(kernel(project, 'init'), /with services: sequence/);
  assert.match(kernel(project, 'release'), /Built sequence 0\.1\.0/);
  assert.match(kernel(project, 'start'), /Kernel started: pid \d+, release 0\.1\.0/);
  assert.match(kernel(project, 'status'), /sequence\s+running\s+0\.1\.0\s+0/);

  await writeFile(join(project, 'services', 'sequence', 'index.ts'), sequenceService('0.2.0'));
  succeeds('npm', ['pkg', 'set', 'version=0.2.0'], project);
  assert.match(kernel(project, 'release'), /plan: 0\.1\.0 -> 0\.2\.0: sequence code only/);
  assert.match(kernel(project, 'upgrade', './releases/0.2.0'), /sequence: 0\.1\.0 \(vsn 0\) -> 0\.2\.0 \(vsn 0\), migration none/);

  await writeFile(join(project, 'services', 'sequence', 'index.ts'), sequenceWithDelta);
  succeeds('npm', ['pkg', 'set', 'version=0.3.0'], project);
  kernel(project, 'release');
  assert.match(kernel(project, 'upgrade', './releases/0.3.0'), /sequence: 0\.2\.0 \(vsn 0\) -> 0\.3\.0 \(vsn 1\), migration 0 -> 1 \(up, in 0\.3\.0\)/);
  assert.match(kernel(project, 'releases'), /^0\.3\.0\s+permanent\s+yes/m);
  assert.match(kernel(project, 'stop'), /Kernel stopped/);
  // The configuration was compiled next to itself to be loaded, and removed after.
  assert.deepEqual((await readdir(project)).filter((name) => name.startsWith('.theseus.config')), []);
});

test("the release tarball built by the installed package boots with its own bin/kernel", async () => {
  const { project } = await installed;
  const tarball = join(project, 'releases', '0.1.0', 'sequence-0.1.0.tar.gz');
  await stat(tarball).catch(() => assert.fail(`${tarball} was not built; the tutorial test runs first`));
  const deployRoot = await tempDir('theseus-package-deploy-');
  scratch.push(deployRoot);
  await extract({ file: tarball, cwd: deployRoot });
  running.push(deployRoot);
  assert.match(succeeds(join(deployRoot, 'bin', 'kernel'), ['start'], deployRoot), /Kernel started: pid \d+, release 0\.1\.0/);
  assert.match(succeeds(join(deployRoot, 'bin', 'kernel'), ['status'], deployRoot), /sequence\s+running\s+0\.1\.0/);
  assert.match(succeeds(join(deployRoot, 'bin', 'kernel'), ['stop'], deployRoot), /Kernel stopped/);
});

test("a plain .mjs file imports { Kernel } from 'theseus' and hot-swaps a TypeScript service", async () => {
  const { project } = await installed;
  await mkdir(join(project, 'api'), { recursive: true });
  await writeFile(join(project, 'api', 'v1.ts'), sequenceService('0.1.0'));
  await writeFile(join(project, 'api', 'v2.ts'), sequenceWithDelta);
  await writeFile(
    join(project, 'api', 'run.mjs'),
    `import { Kernel, SwapError, TheseusError } from 'theseus';

const kernel = await Kernel.start({ release: '0.1.0', services: { sequence: { entry: 'api/v1.ts' } } });
const sequence = kernel.client('sequence');
const before = [await sequence.nextNumber(), await sequence.nextNumber()];
const report = await kernel.upgrade({ release: '0.2.0', services: { sequence: { entry: 'api/v2.ts' } } });
const afterSwap = await sequence.nextNumber();
await kernel.stop();
console.log(JSON.stringify({
  resolved: import.meta.resolve('theseus'),
  before,
  afterSwap,
  migration: report.services[0].migration,
  errors: [typeof SwapError, typeof TheseusError],
}));
`,
  );
  const output = succeeds(process.execPath, ['api/run.mjs'], project);
  const result = JSON.parse(output.trim().split('\n').find((line) => line.startsWith('{'))!) as { resolved: string; before: number[]; afterSwap: string; migration: unknown; errors: string[] };
  assert.equal(result.resolved, new URL(join(project, 'node_modules', 'theseus', 'dist', 'index.js'), 'file://').href);
  assert.deepEqual(result.before, [456, 457]);
  assert.equal(result.afterSwap, 'The next number is 458');
  assert.ok(result.migration, `the swap ran the migration: ${output}`);
  assert.deepEqual(result.errors, ['function', 'function']);
});

test("each relative import in the package's .d.ts files names a module the package ships, with its types", async () => {
  // tsc keeps the sources' './x.ts' in the declarations it writes; no ./x.ts is installed.
  const { project } = await installed;
  const dist = join(project, 'node_modules', 'theseus', 'dist');
  const declarations = (await readdir(dist, { recursive: true })).filter((file) => file.endsWith('.d.ts'));
  assert.ok(declarations.includes('index.d.ts'), 'the package has its declarations');
  const missing: string[] = [];
  let imports = 0;
  for (const file of declarations) {
    const text = await readFile(join(dist, file), 'utf8');
    for (const [, specifier] of text.matchAll(/(?:from|import)\s*\(?\s*['"](\.\.?\/[^'"]+)['"]/g)) {
      imports += 1;
      const target = join(dist, dirname(file), specifier!);
      if (!target.endsWith('.js')) {
        missing.push(`${file}: ${specifier} (not the path of a .js file)`);
        continue;
      }
      for (const shipped of [target, target.replace(/\.js$/, '.d.ts')]) {
        await access(shipped).catch(() => missing.push(`${file}: ${specifier} (${shipped} is missing)`));
      }
    }
  }
  assert.ok(imports > 50, `the declarations import each other (${imports} relative imports)`);
  assert.deepEqual(missing, []);
});

test("the package's .d.ts types check a consumer's TypeScript", async () => {
  const { project } = await installed;
  await writeFile(
    join(project, 'typed.ts'),
    `import { Kernel, type ClientOf } from 'theseus';
import { defineService } from 'theseus/service';
import { defineRelease } from 'theseus/release';

const sequence = defineService({ vsn: '0', init: () => 456, calls: { nextNumber: ({ state }) => ({ reply: state, state: state + 1 }) } });
export const config = defineRelease({ app: 'typed', services: { sequence: { entry: './typed.ts' } } });
const kernel = await Kernel.start({ release: '0.1.0', services: { sequence: { entry: 'typed.ts' } } });
const client = kernel.client<ClientOf<typeof sequence>>('sequence');
export const next: number = await client.nextNumber();
// @ts-expect-error the reply is a number: a package whose types were 'any' would fail here
export const wrong: string = await client.nextNumber();
`,
  );
  // The repo's compiler and Node types (a consumer brings its own); the package's .d.ts files
  // are checked too (no skipLibCheck).
  const tsconfig = {
    compilerOptions: { target: 'ES2022', module: 'nodenext', moduleResolution: 'nodenext', strict: true, noEmit: true, skipLibCheck: false, types: ['node'], typeRoots: [join(repo, 'node_modules', '@types')] },
    files: ['typed.ts'],
  };
  await writeFile(join(project, 'tsconfig.json'), JSON.stringify(tsconfig, null, 2));
  succeeds(process.execPath, [join(repo, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], project);
});
