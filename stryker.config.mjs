// Mutation testing with StrykerJS 9 (Stryker 10 needs Node 22): `npm run mutate` runs it once per
// module below, each with only the fast tests that import it in-process (scripts/mutate.ts);
// `npx stryker run` runs this whole config at once.
//
// The tap runner starts each test file as `node --import tsx … <file>`, in Stryker's sandbox (a
// copy of the project with the mutants compiled in). The kernel's esbuild bundles are built from
// that copy too (kernel/main/bundler.ts resolves the project from its own location), so a worker
// thread runs the same mutated code; a mutant is switched on by an environment variable, which
// worker threads see as well.

/**
 * The modules where a silent bug costs most, and the tests that cover each. `timeoutMS` is how long
 * past its usual time a test file may run before its mutant counts as one that hangs (detected):
 * short for pure functions, where a mutant that loops forever would otherwise cost the default.
 */
export const mutationModules = {
  // Not control-server-slow-client.test.ts: it waits out a partial-frame timeout (1 s), which would
  // stretch every mutant's time limit by as much. Its 5 mutants show as "no coverage" here.
  'control-server': { mutate: 'kernel/main/control-server.ts', tests: ['test/kernel/control-server.test.ts'], timeoutMS: 3000 },
  migrations: { mutate: 'kernel/common/migrations.ts', tests: ['test/common/migrations.test.ts'], timeoutMS: 3000 },
  'plain-data': { mutate: 'kernel/common/plain-data.ts', tests: ['test/common/plain-data.test.ts', 'test/common/state-codec.test.ts'], timeoutMS: 3000 },
  manifest: { mutate: 'kernel/release/manifest.ts', tests: ['test/release/manifest.test.ts'], timeoutMS: 3000 },
  'release-paths': { mutate: 'kernel/release/release-paths.ts', tests: ['test/release/release-paths.test.ts'], timeoutMS: 3000 },
  'tar-scan': { mutate: 'kernel/release/tar-scan.ts', tests: ['test/release/tar-scan.test.ts'], timeoutMS: 3000 },
  tarball: { mutate: 'kernel/release/tarball.ts', tests: ['test/release/tarball.test.ts'], timeoutMS: 5000 },
  install: { mutate: 'kernel/release/install.ts', tests: ['test/release/install-handmade.test.ts'] },
};

const modules = Object.values(mutationModules);

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  testRunner: 'tap',
  tap: {
    testFiles: [...new Set(modules.flatMap((module) => module.tests))],
    nodeArgs: ['--import', 'tsx', '--test-reporter=tap', '-r', '{{hookFile}}', '{{testFile}}'],
    forceBail: true,
  },
  mutate: modules.map((module) => module.mutate),
  // The tap runner reports coverage per test file: a mutant runs only the files that reach it.
  coverageAnalysis: 'perTest',
  // Others share this machine's two cores.
  concurrency: 1,
  // Real sockets, worker threads and esbuild: slower than pure functions, never this slow.
  timeoutMS: 20_000,
  reporters: ['clear-text', 'progress', 'html', 'json'],
  htmlReporter: { fileName: 'reports/mutation/mutation.html' },
  jsonReporter: { fileName: 'reports/mutation/mutation.json' },
  tempDirName: '.stryker-tmp',
  // Stryker rewrites tsconfig.json's outside paths through TypeScript's JavaScript API, which
  // TypeScript 7 no longer has; ours has no such paths, so name a file that does not exist and
  // the sandbox keeps tsconfig.json as it is.
  tsconfigFile: 'tsconfig.stryker-skips-this.json',
  cleanTempDir: 'always',
  ignorePatterns: ['releases', 'var', 'reports', '.theseus-cache', 'NOTES-*.md'],
};
