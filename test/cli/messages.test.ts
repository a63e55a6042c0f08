// The CLI's messages and exit codes, one row per situation, through the real CLI as a subprocess:
// `node kernel` in the repo, `node <repo>/kernel` in an empty folder (no kernel, no release), and
// `bin/kernel` in a deploy root unpacked from a real tarball, whose kernel runs release 0.2.0.
// Each row names where it runs, its arguments, the exit code, and the error code or text it prints.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { extract } from 'tar';
import { hasExited, root as repo, runAsync, swapJson, waitUntil } from '../helpers.ts';
import { sharedExamples, tempDir } from '../release/helpers.ts';

type Where = 'repo' | 'empty' | 'deploy';

interface Row {
  where: Where;
  argv: string[];
  exit: number;
  /** The error code: in `[E_...]` on stderr, or in the JSON error object on stdout with --json. */
  code?: string;
  stdout?: RegExp;
  stderr?: RegExp;
  /** Said nowhere in the output. */
  not?: RegExp;
}

const built = sharedExamples();
const places: Record<Where, string> = { repo, empty: '', deploy: '' };
/** Paths the rows name: `$TARBALL_030` and so on, filled in once they exist. */
const paths: Record<string, string> = {};
let version = '';

function invocation(where: Where, args: string[]) {
  const cwd = places[where];
  const [command, prefix] = where === 'deploy' ? [join(cwd, 'bin', 'kernel'), []] : [process.execPath, [where === 'repo' ? 'kernel' : join(repo, 'kernel')]];
  const env = { ...process.env, THESEUS_ROOT: '', npm_command: '' };
  return { command, argv: [...prefix, ...args], options: { cwd, encoding: 'utf8' as const, timeout: 120_000, env } };
}

function kernel(where: Where, args: string[]) {
  const { command, argv, options } = invocation(where, args);
  return spawnSync(command, argv, options);
}

/** The same, without blocking this process, so that rows of different lanes run side by side. */
function kernelAsync(where: Where, args: string[]) {
  const { command, argv, options } = invocation(where, args);
  return runAsync(command, argv, options);
}

before(async () => {
  const { outDir, results } = await built;
  version = (JSON.parse(await readFile(join(repo, 'package.json'), 'utf8')) as { version: string }).version;
  places.empty = await tempDir('theseus-empty-');
  places.deploy = await tempDir('theseus-messages-');
  await extract({ file: results[0]!.tarball, cwd: places.deploy });
  const scratch = await tempDir('theseus-not-releases-');
  paths.$OUT = outDir;
  paths.$TARBALL_020 = results[1]!.tarball;
  paths.$TARBALL_030 = results[2]!.tarball;
  paths.$TEXT_TGZ = join(scratch, 'sequence-0.4.0.tar.gz');
  await writeFile(paths.$TEXT_TGZ, 'a text file, not an archive\n');
  paths.$EMPTY_DIR = join(scratch, 'empty');
  await mkdir(paths.$EMPTY_DIR);
  for (const args of [['start'], ['upgrade', paths.$TARBALL_020]]) {
    const run = kernel('deploy', args);
    assert.equal(run.status, 0, run.stderr + run.stdout);
  }
});

after(() => {
  if (places.deploy) kernel('deploy', ['stop']);
});

const config010 = 'services/sequence/0.1.0/theseus.config.ts';

const rows: Row[] = [
  // Arguments, read strictly.
  { where: 'repo', argv: ['start', 'now'], exit: 2, code: 'E_USAGE', stderr: /^kernel start: unexpected argument 'now' \(start takes no arguments\)\. 'node kernel start --help' shows the usage\. \[E_USAGE\]\n$/ },
  { where: 'deploy', argv: ['upgrade', '0.2.0', '0.3.0'], exit: 2, code: 'E_USAGE', stderr: /unexpected argument '0\.3\.0' \(upgrade takes one: <folder\|tarball\|version>\)/ },
  { where: 'repo', argv: ['upgrade'], exit: 2, code: 'E_USAGE', stderr: /Which release\? Give its folder, its tarball or its version/ },
  { where: 'repo', argv: ['logs', '-n', '0'], exit: 2, code: 'E_USAGE', stderr: /-n 0 shows nothing/ },
  { where: 'repo', argv: ['logs', '-n', 'abc'], exit: 2, code: 'E_USAGE', stderr: /option -n\/--lines takes a whole number from 0 up, not 'abc'/ },
  { where: 'repo', argv: ['logs', '--lines=-3'], exit: 2, code: 'E_USAGE', stderr: /not '-3'/ },
  { where: 'repo', argv: ['upgrade', '--no-comit', 'x'], exit: 2, code: 'E_USAGE', stderr: /unknown option '--no-comit'; did you mean '--no-commit'\?/, not: /TypeError|ERR_PARSE_ARGS/ },
  { where: 'repo', argv: ['status', '--jsn'], exit: 2, code: 'E_USAGE', stderr: /did you mean '--json'\?/ },
  { where: 'repo', argv: ['status', '--root', '--json'], exit: 2, code: 'E_USAGE', stdout: /"message":"option --root needs a value: --root <folder>\. / },
  { where: 'repo', argv: ['stauts'], exit: 2, code: 'E_USAGE', stderr: /^kernel: unknown verb 'stauts'; did you mean 'status'\?/ },
  { where: 'repo', argv: ['status', '--jsn', '--json'], exit: 2, code: 'E_USAGE' },
  // Help and version.
  { where: 'repo', argv: ['logs', '--help'], exit: 0, stdout: /^ {2}-n, --lines <n> +how many/m },
  { where: 'repo', argv: ['help', 'upgrade'], exit: 0, stdout: /^Usage: node kernel upgrade <folder\|tarball\|version> \[options\]\n\nHot-upgrade the running kernel to a newer release/ },
  { where: 'repo', argv: ['help', 'nope'], exit: 2, code: 'E_USAGE', stderr: /unknown verb 'nope'/ },
  { where: 'repo', argv: ['--help'], exit: 0, stdout: /^Usage: node kernel <verb> \[options\][\s\S]*^ {2}release +build/m },
  { where: 'repo', argv: ['--version'], exit: 0, stdout: /^VERSION\n$/ },
  { where: 'deploy', argv: ['version'], exit: 0, stdout: /^VERSION\n$/ },
  { where: 'deploy', argv: ['--version'], exit: 0, stdout: /^VERSION\n$/ },
  { where: 'deploy', argv: ['--help'], exit: 0, stdout: /^Usage: bin\/kernel <verb>/, not: /^ {2}(init|release) /m },
  // Verbs a deploy root does not offer: said so, without blaming a configuration.
  { where: 'deploy', argv: ['release'], exit: 2, code: 'E_VERB_NOT_IN_DEPLOY_ROOT', stderr: /release builds a release from a project's configuration, and .* is a deploy root/, not: /E_CONFIG|No release configuration/ },
  { where: 'deploy', argv: ['init'], exit: 2, code: 'E_VERB_NOT_IN_DEPLOY_ROOT', not: /E_CONFIG|theseus\.config\.ts/ },
  { where: 'deploy', argv: ['help', 'release'], exit: 2, code: 'E_VERB_NOT_IN_DEPLOY_ROOT' },
  // No kernel, no release.
  { where: 'empty', argv: ['status'], exit: 1, code: 'E_KERNEL_NOT_RUNNING', stderr: /Start one with 'node \S+kernel start'/ },
  { where: 'empty', argv: ['status', '--json'], exit: 1, code: 'E_KERNEL_NOT_RUNNING' },
  { where: 'empty', argv: ['releases', '--root', '$EMPTY_DIR', '--lines', '3'], exit: 2, code: 'E_USAGE', stderr: /unknown option '--lines' \(releases takes --root, --json\)/ },
  { where: 'empty', argv: ['upgrade', 'x', '--json'], exit: 1, code: 'E_KERNEL_NOT_RUNNING' },
  { where: 'empty', argv: ['start', 'now', '--json'], exit: 2, code: 'E_USAGE' },
  { where: 'empty', argv: ['start'], exit: 1, code: 'E_NO_RELEASE_TO_START', stderr: /There is no release to start in \S+: releases\/ holds no built release, and there is no theseus\.config\.ts/, not: /E_RELEASE_NOT_FOUND/ },
  // Building, in the repo.
  { where: 'repo', argv: ['release'], exit: 1, code: 'E_EXAMPLE_HAS_CONFIGS', stderr: /services\/sequence\/\{0\.1\.0,0\.2\.0,0\.3\.0,0\.4\.0,0\.5\.0\}\/theseus\.config\.ts/ },
  { where: 'repo', argv: ['init'], exit: 1, code: 'E_EXAMPLE_HAS_CONFIGS', stderr: /'node kernel start' builds its releases/ },
  { where: 'repo', argv: ['release', '--config', config010, '--out', '$OUT', '--json'], exit: 1, code: 'E_VERSION_NOT_BUMPED' },
  { where: 'repo', argv: ['release', '--config', config010, '--out', '$OUT', '--upfrom', '9.9.9'], exit: 1, code: 'E_UPFROM_NOT_BUILT', stderr: /--upfrom 9\.9\.9: no release 9\.9\.9 is built in / },
  // Which way a swap goes, and a swap to what runs already: refused as asked, said once.
  { where: 'deploy', argv: ['upgrade', '0.1.0'], exit: 1, code: 'E_UPGRADE_IS_DOWNGRADE', stderr: /^kernel upgrade: 0\.1\.0 is older than the running 0\.2\.0; run 'bin\/kernel downgrade 0\.1\.0' to go back to it\. Nothing was done\. \[E_UPGRADE_IS_DOWNGRADE\]\n$/ },
  { where: 'deploy', argv: ['downgrade', '$TARBALL_030'], exit: 1, code: 'E_DOWNGRADE_IS_UPGRADE', stderr: /^kernel downgrade: 0\.3\.0 is newer than the running 0\.2\.0; run 'bin\/kernel upgrade \S+sequence-0\.3\.0\.tar\.gz' to go forward to it\./ },
  { where: 'deploy', argv: ['upgrade', '0.2.0'], exit: 1, code: 'E_RELEASE_ALREADY_RUNNING', stderr: /^kernel upgrade: 0\.2\.0 is already running\. Nothing was done\. \[E_RELEASE_ALREADY_RUNNING\]\n$/ },
  { where: 'deploy', argv: ['downgrade', '0.2.0', '--json'], exit: 1, code: 'E_RELEASE_ALREADY_RUNNING', not: /in phase/ },
  // What is not there, or is no release: a code each.
  { where: 'deploy', argv: ['remove', '9.9.9'], exit: 1, code: 'E_RELEASE_NOT_INSTALLED', stderr: /Release 9\.9\.9 is not installed \(installed: 0\.1\.0, 0\.2\.0\)\. There is nothing to remove/ },
  { where: 'deploy', argv: ['downgrade', '0.0.9'], exit: 1, code: 'E_RELEASE_NOT_INSTALLED', stderr: /give its release folder or tarball instead of its version/ },
  { where: 'deploy', argv: ['upgrade', './no-such-release'], exit: 1, code: 'E_RELEASE_NOT_FOUND', stderr: /no file or folder has that path/ },
  { where: 'deploy', argv: ['upgrade', '$TEXT_TGZ'], exit: 1, code: 'E_RELEASE_NOT_A_RELEASE' },
  { where: 'deploy', argv: ['upgrade', '$EMPTY_DIR', '--json'], exit: 1, code: 'E_RELEASE_NOT_A_RELEASE' },
  { where: 'deploy', argv: ['start'], exit: 1, code: 'E_ALREADY_RUNNING', stderr: /Stop it with 'bin\/kernel stop' first/ },
  // The tarball's own release was installed when it was unpacked, not in 1970.
  { where: 'deploy', argv: ['releases'], exit: 0, stdout: /^0\.1\.0 +old +\d{4}/m, not: /1970-01-01/ },
];

/**
 * Which rows may run side by side. The deploy root's rows run one at a time, in order: a refused
 * swap installs its release and removes it again, which another row (the installed releases that
 * `remove` lists) would see. So do the empty folder's (`start` looks for releases there). The
 * repo's rows only read: they run in two lanes of their own.
 */
function lane(row: Row, index: number): string {
  return row.where === 'repo' ? `repo-${index % 2}` : row.where;
}

test('the CLI says what each situation is, with its own code and exit code', { concurrency: true }, async (t) => {
  const lanes = new Map<string, Promise<unknown>>();
  const runs = rows.map((row, index) => {
    const previous = lanes.get(lane(row, index)) ?? Promise.resolve();
    const done = previous.then(() => t.test(`${row.where}: kernel ${row.argv.join(' ')}`, async () => {
      const run = await kernelAsync(row.where, row.argv.map((arg) => paths[arg] ?? arg));
      const output = `stdout:\n${run.stdout}\nstderr:\n${run.stderr}`;
      assert.equal(run.status, row.exit, output);
      if (row.code && row.argv.includes('--json')) {
        // One JSON object on stdout, whichever verb failed, and nothing on stderr.
        // A swap streams its phases first (none here), then the result; any other verb prints one line.
        const swap = row.argv[0] === 'upgrade' || row.argv[0] === 'downgrade';
        if (!swap) assert.equal(run.stdout.trim().split('\n').length, 1, output);
        const result = (swap ? swapJson(run.stdout) : JSON.parse(run.stdout)) as { ok: boolean; error: { code: string; message: string } };
        assert.deepEqual([result.ok, result.error.code], [false, row.code], output);
        assert.equal(run.stderr, '', output);
      } else if (row.code) {
        assert.match(run.stderr, new RegExp(`\\[${row.code}\\]\\n$`), output);
        assert.equal(run.stderr.trim().split('\n').length, 1, `one line, no stack trace:\n${output}`);
      }
      if (row.stdout) assert.match(run.stdout, new RegExp(row.stdout.source.replace('VERSION', version.replaceAll('.', '\\.')), row.stdout.flags), output);
      if (row.stderr) assert.match(run.stderr, row.stderr, output);
      if (row.not) assert.doesNotMatch(run.stdout + run.stderr, row.not, output);
    }));
    lanes.set(lane(row, index), done);
    return done;
  });
  await Promise.all(runs);
});

test('a --no-commit swap is logged as on trial; the front door logs the port it stopped; start says it reverted the trial', async () => {
  const up = kernel('deploy', ['upgrade', paths.$TARBALL_030!, '--no-commit']);
  assert.equal(up.status, 0, up.stderr + up.stdout);
  const logged = kernel('deploy', ['logs', '-n', '5']).stdout;
  assert.match(logged, /upgrade 0\.2\.0 -> 0\.3\.0 done: 0\.3\.0 is on trial/);
  assert.doesNotMatch(logged, /committed/);

  assert.equal(kernel('deploy', ['stop']).status, 0);
  const stopped = /HTTP front door stopped listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(kernel('deploy', ['logs', '-n', '20']).stdout);
  assert.ok(stopped, 'the front door says it stopped listening');
  assert.notEqual(stopped[1], '0', 'the port it was bound to, not the configured 0');

  const started = kernel('deploy', ['start']);
  assert.equal(started.status, 0, started.stderr + started.stdout);
  assert.match(started.stdout, /^Release 0\.3\.0 was on trial \(never committed\), so the kernel went back to the permanent release 0\.2\.0\. 'bin\/kernel upgrade 0\.3\.0' runs it again/m);
  assert.match(started.stdout, /Kernel started: pid \d+, release 0\.2\.0/);
});

test('right after a kill -9, status and start agree that no kernel runs', async () => {
  const pid = Number((await readFile(join(places.deploy, 'var', 'kernel.pid'), 'utf8')).trim());
  process.kill(pid, 'SIGKILL');
  // Until its parent reaps it, a killed process is a zombie: it still holds its pid. Here the
  // kernel's parent is the machine's init, which may take a while; the CLI must not wait for it.
  await waitUntil(`kernel ${pid} to exit after SIGKILL`, () => hasExited(pid), { intervalMs: 10 });
  const status = kernel('deploy', ['status']);
  assert.equal(status.status, 1, status.stdout);
  assert.match(status.stderr, /No kernel is running in .*\[E_KERNEL_NOT_RUNNING\]/);
  const started = kernel('deploy', ['start']);
  assert.equal(started.status, 0, started.stderr + started.stdout);
  assert.match(started.stdout, /Removed a stale pid file left by a kernel that is gone \(pid \d+\)/);
});
