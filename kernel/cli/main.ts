// `kernel <verb>`: the command line. Runs in the CLI's own process (or, for `foreground`, it is
// the kernel's process). Each verb parses its arguments, runs, and always cleans up; a user error
// prints one line and exits 1, an internal error prints its stack.

import { rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { PhaseEvent } from '../common/control-protocol.ts';
import { TheseusError, theseusError } from '../common/errors.ts';
import { DEFAULT_CONFIG_FILE, isAlive, resolveDeployRoot } from '../common/deploy-paths.ts';
import { closest, parseVerbArgs, usageError, type ArgumentSpec, type Options } from './args.ts';
import { request } from './control-client.ts';
import { describeSwapFailure, formatPhase, formatReleases, formatServiceSwap, formatStatus } from './format.ts';
import { bundledRoot, commandName, localize } from './invocation.ts';

/** Exit codes, documented in the README. */
export const EXIT = {
  ok: 0,
  failure: 1,
  usage: 2,
} as const;

type Values = Record<string, string | boolean | undefined>;

interface Verb {
  summary: string;
  /** The positional arguments it requires; it takes no others. */
  args?: ArgumentSpec[];
  options?: Options;
  /** What it does in a project (it builds releases): not offered in a deploy root, which only runs them. */
  projectOnly?: string;
  run(values: Values, positionals: string[]): Promise<number>;
}

const rootOption: Options = { root: { type: 'string', placeholder: 'folder', description: 'deploy root (default: $THESEUS_ROOT, else the current folder)' } };
const jsonOption: Options = { json: { type: 'boolean', description: 'print JSON (an error too, as {"ok":false,"error":{...}})' } };

/** A line for the user, its suggested commands written the way that works here. */
const say = (line: string) => process.stdout.write(`${localize(line)}\n`);
/** A line for a program: JSON, never rewritten (the messages inside already are). */
const sayJson = (value: unknown) => process.stdout.write(`${JSON.stringify(value)}\n`);

const rootArg = (values: Values) => resolveDeployRoot(values.root as string | undefined);

const releaseArg: ArgumentSpec[] = [{ name: '<folder|tarball|version>', missing: 'Which release? Give its folder, its tarball or its version' }];

const verbs: Record<string, Verb> = {
  start: {
    summary: 'start the kernel as a daemon on the permanent release, and return once it is ready (in a project with no release yet, build it first)',
    options: rootOption,
    async run(values) {
      const { startDaemon } = await import('./start.ts');
      const root = rootArg(values);
      const { pid, release, notes } = await startDaemon(root, say);
      for (const note of notes) say(note);
      say(`Kernel started: pid ${pid}, release ${release}, root ${root}`);
      const command = commandName();
      say(`  status: ${command} status   logs: ${command} logs -f   console: ${command} console   stop: ${command} stop${resolve(process.cwd()) === root ? '' : `   (each with --root ${root})`}`);
      return EXIT.ok;
    },
  },
  foreground: {
    summary: 'run the kernel in the foreground on the permanent release, until SIGINT or SIGTERM (for systemd and containers)',
    options: rootOption,
    async run(values) {
      const { KernelDaemon } = await import('../main/daemon.ts');
      const daemon = await KernelDaemon.start({ root: rootArg(values), terminal: Boolean(process.stdout.isTTY) });
      if (daemon.revertedTrial) say(`Release ${daemon.revertedTrial} was on trial (never committed) and was reverted: running the permanent release ${daemon.release}.`);
      say(`kernel ready: ${daemon.summary}`);
      const stop = () => void daemon.stop();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      await daemon.stopped;
      say('kernel stopped');
      return EXIT.ok;
    },
  },
  stop: {
    summary: 'drain the services, end them cleanly and exit',
    options: rootOption,
    async run(values) {
      const root = rootArg(values);
      // graceMs: how long the kernel keeps answering health 'draining' before its listeners close.
      const { pid, graceMs } = await request(root, 'stop', {});
      if (graceMs > 0) say(`Draining: health answers 503 for ${graceMs} ms, then the HTTP listeners close.`);
      const deadline = Date.now() + 60_000 + graceMs;
      while (isAlive(pid) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
      if (isAlive(pid)) throw theseusError('E_KERNEL_TIMEOUT', 'stop', 60_000 + graceMs);
      say(`Kernel stopped (pid ${pid}).`);
      return EXIT.ok;
    },
  },
  ping: {
    summary: 'check that the kernel answers',
    options: rootOption,
    async run(values) {
      const { pid, release } = await request(rootArg(values), 'ping', {}, { timeoutMs: 5000 });
      say(`pong: pid ${pid}, release ${release}`);
      return EXIT.ok;
    },
  },
  pid: {
    summary: "print the kernel's process id",
    options: rootOption,
    async run(values) {
      const { pid } = await request(rootArg(values), 'ping', {}, { timeoutMs: 5000 });
      say(String(pid));
      return EXIT.ok;
    },
  },
  status: {
    summary: 'show the release, every service (version, vsn, uptime, calls, in flight, memory) and the last upgrade',
    options: { ...rootOption, ...jsonOption },
    async run(values) {
      const status = await request(rootArg(values), 'status', {});
      if (values.json) {
        sayJson(status);
        return EXIT.ok;
      }
      for (const line of formatStatus(status)) say(line);
      return EXIT.ok;
    },
  },
  dashboard: {
    summary: "print the live dashboard's address and token, /metrics for Prometheus, and the ssh -L line that reaches them",
    options: { ...rootOption, ...jsonOption },
    async run(values) {
      const { dashboardInfo, formatDashboard } = await import('./dashboard.ts');
      const info = await dashboardInfo(rootArg(values));
      if (values.json) {
        sayJson(info);
        return EXIT.ok;
      }
      for (const line of formatDashboard(info)) say(line);
      return EXIT.ok;
    },
  },
  upgrade: {
    summary: 'hot-upgrade the running kernel to a newer release (folder, tarball or installed version)',
    args: releaseArg,
    options: { ...rootOption, 'no-commit': { type: 'boolean', description: "leave the release on trial; 'kernel commit' makes it permanent" }, ...jsonOption },
    async run(values, [source]) {
      return swapVerb('upgrade', rootArg(values), await typedSource(source!), !values['no-commit'], Boolean(values.json));
    },
  },
  downgrade: {
    summary: 'hot-downgrade the running kernel to an older release (installed version, folder or tarball)',
    args: [{ name: '<version|folder|tarball>', missing: 'To which release? Give its version, its folder or its tarball' }],
    options: { ...rootOption, 'no-commit': { type: 'boolean', description: "leave the release on trial; 'kernel commit' makes it permanent" }, ...jsonOption },
    async run(values, [target]) {
      return swapVerb('downgrade', rootArg(values), await typedSource(target!), !values['no-commit'], Boolean(values.json));
    },
  },
  commit: {
    summary: 'make the release on trial permanent',
    options: rootOption,
    async run(values) {
      const { permanent } = await request(rootArg(values), 'commit', {});
      say(`Made release permanent: ${permanent}`);
      return EXIT.ok;
    },
  },
  releases: {
    summary: 'list the releases installed in the deploy root',
    options: { ...rootOption, ...jsonOption },
    async run(values) {
      const root = rootArg(values);
      // Through the kernel when one runs (it knows which release is running); else the registry file.
      const releases = await request(root, 'releases', {}, { timeoutMs: 5000 }).catch(async (error: unknown) => {
        if (error instanceof TheseusError && error.code === 'E_KERNEL_NOT_RUNNING') {
          const { readRegistry, withInstallTimes } = await import('../release/registry.ts');
          return (await withInstallTimes(root, await readRegistry(root))).releases.map((r) => ({ ...r, running: false }));
        }
        throw error;
      });
      if (values.json) {
        sayJson(releases);
        return EXIT.ok;
      }
      if (releases.length === 0) {
        say('No releases installed.');
        return EXIT.ok;
      }
      say(formatReleases(releases));
      return EXIT.ok;
    },
  },
  remove: {
    summary: 'remove an installed release (never the permanent, current or running one)',
    args: [{ name: '<version>', missing: 'Which release? Give its version' }],
    options: rootOption,
    async run(values, [version]) {
      const root = rootArg(values);
      try {
        await request(root, 'remove', { version: version! });
      } catch (error) {
        if (!(error instanceof TheseusError && error.code === 'E_KERNEL_NOT_RUNNING')) throw error;
        // No kernel: edit the registry directly. The registry first, so a release it no longer
        // lists is never booted, even if the delete below is cut short.
        const { readRegistry, withoutRelease, writeRegistry } = await import('../release/registry.ts');
        await writeRegistry(root, withoutRelease(await readRegistry(root), version!));
        await rm(join(root, 'releases', version!), { recursive: true, force: true });
      }
      say(`Removed release ${version}.`);
      return EXIT.ok;
    },
  },
  logs: {
    summary: "show the kernel's log (var/log/kernel.log); -f follows it",
    options: {
      ...rootOption,
      follow: { type: 'boolean', short: 'f', description: 'keep printing new lines' },
      lines: { type: 'string', short: 'n', whole: true, placeholder: 'n', description: 'how many of the last lines to show first (default 50; 0 with -f shows only new ones)' },
    },
    async run(values) {
      const lines = Number(values.lines ?? 50);
      if (lines === 0 && !values.follow) throw usageError('logs', '-n 0 shows nothing without -f (with -f, only the lines to come); give 1 or more');
      const { showLogs } = await import('./logs.ts');
      await showLogs(rootArg(values), { follow: Boolean(values.follow), lines });
      return EXIT.ok;
    },
  },
  console: {
    summary: 'attach a REPL to the running kernel: its services in scope, their log lines as they happen, commands in .help',
    options: rootOption,
    async run(values) {
      const { runConsole } = await import('./console.ts');
      return runConsole(rootArg(values));
    },
  },
  init: {
    summary: `write the release configuration (${DEFAULT_CONFIG_FILE}) with a comment on every option`,
    projectOnly: "writes a project's release configuration",
    options: {
      config: { type: 'string', placeholder: 'file', description: `file to write (default: ${DEFAULT_CONFIG_FILE})` },
      force: { type: 'boolean', description: 'overwrite an existing file' },
    },
    async run(values) {
      if (!values.config) await refuseInExample('init');
      const { writeInitialConfig } = await import('../release/init.ts');
      const { file, services } = await writeInitialConfig(process.cwd(), {
        ...(values.config ? { file: values.config as string } : {}),
        force: Boolean(values.force),
      });
      say(`Wrote ${file}${services.length > 0 ? ` with services: ${services.join(', ')}` : ' (no services found under services/; add them)'}.`);
      say("Review it, then run 'kernel release' to build a release, or 'kernel start' to build one and start it.");
      return EXIT.ok;
    },
  },
  release: {
    summary: 'build releases/<version>/ with esbuild: bundles, manifest, upgrade plan and tarball',
    projectOnly: "builds a release from a project's configuration",
    options: {
      config: { type: 'string', placeholder: 'file', description: `release configuration (default: ${DEFAULT_CONFIG_FILE})` },
      out: { type: 'string', placeholder: 'folder', description: 'folder for releases/<version>/ (default: ./releases)' },
      upfrom: { type: 'string', placeholder: 'version', description: 'plan the upgrade from this release (default: the newest earlier one)' },
      'include-node': { type: 'boolean', description: 'put this Node.js binary in the tarball' },
      sign: { type: 'string', placeholder: 'key.pem', description: 'sign manifest.json with this ed25519 private key (PEM)' },
      ...jsonOption,
    },
    async run(values) {
      if (!values.config) await refuseInExample('release');
      // The builder pulls in esbuild, which a deployed kernel does not ship: load it only here.
      const { buildRelease } = await import('../release/build.ts');
      const result = await buildRelease({
        configFile: resolve((values.config as string | undefined) ?? DEFAULT_CONFIG_FILE),
        outDir: resolve((values.out as string | undefined) ?? 'releases'),
        ...(values.upfrom ? { upfrom: values.upfrom as string } : {}),
        includeNode: Boolean(values['include-node']),
        ...(values.sign ? { signKey: resolve(values.sign as string) } : {}),
        log: values.json ? () => undefined : say,
      });
      if (values.json) {
        sayJson({ version: result.version, dir: result.dir, tarball: result.tarball, built: result.built, plan: result.plan, steps: result.steps, totalMs: result.totalMs });
      } else {
        say(`  steps: ${result.steps.map((s) => `${s.step} ${s.ms} ms`).join(', ')}`);
      }
      return EXIT.ok;
    },
  },
  'systemd-unit': {
    summary: 'print a systemd unit that runs this deploy root with `bin/kernel foreground` (stop drains; a crash restarts)',
    options: {
      ...rootOption,
      user: { type: 'string', placeholder: 'user', description: 'the user the kernel runs as (default: the current user)' },
      group: { type: 'string', placeholder: 'group', description: "its group (default: the user's own)" },
      'stop-grace-ms': { type: 'string', whole: true, placeholder: 'ms', description: "how long a stop answers health 'draining' before the HTTP listeners close (default 0)" },
      node: { type: 'string', placeholder: 'path', description: "the Node.js binary (default: the release's bundled one, else the one running this command)" },
    },
    async run(values) {
      const { systemdUnit } = await import('./systemd-unit.ts');
      const grace = values['stop-grace-ms'] as string | undefined;
      process.stdout.write(
        await systemdUnit({
          root: rootArg(values),
          ...(values.user ? { user: values.user as string } : {}),
          ...(values.group ? { group: values.group as string } : {}),
          ...(grace !== undefined ? { stopGraceMs: Number(grace) } : {}),
          ...(values.node ? { node: resolve(values.node as string) } : {}),
        }),
      );
      return EXIT.ok;
    },
  },
  version: {
    summary: "print Theseus's version (also --version)",
    async run() {
      say(await kernelVersion());
      return EXIT.ok;
    },
  },
  help: {
    summary: 'show this list, or one verb\'s usage (help <verb>)',
    async run() {
      return EXIT.ok; // answered in main(), which knows whether a verb was named
    },
  },
};

/** A path as the kernel must see it (its working folder is not the CLI's); anything else as typed. */
async function typedSource(source: string): Promise<string> {
  const { existsSync } = await import('node:fs');
  return existsSync(source) ? resolve(source) : source;
}

/** `init` and `release` without --config, in the repo's example: say how its releases are built. */
async function refuseInExample(verb: string): Promise<void> {
  const { describeConfigs, versionedConfigs } = await import('./project.ts');
  const configs = await versionedConfigs(process.cwd());
  if (configs.length > 0) throw theseusError('E_EXAMPLE_HAS_CONFIGS', process.cwd(), describeConfigs(process.cwd(), configs), `kernel ${verb}`);
}

/** A failed swap in one line: what became of it, in which phase, and why, each once. */
function swapFailure(verb: string, error: TheseusError): string {
  const { verdict, phase, reason } = describeSwapFailure(error);
  return `kernel ${verb}: ${phase ? `${verdict} in phase '${phase}': ` : ''}${reason} [${error.code}]`;
}

/**
 * upgrade and downgrade: print each phase with its time as it ends, then each service's pause.
 * With --json, one JSON line per phase as it ends ({"phase": ...}), then one line with the result
 * (or the error): scripts read the last line; the phases are repeated there in `steps`.
 */
async function swapVerb(verb: 'upgrade' | 'downgrade', root: string, target: string, commit: boolean, json: boolean): Promise<number> {
  const events: PhaseEvent[] = [];
  const onEvent = (event: PhaseEvent) => {
    events.push(event);
    if (json) sayJson({ phase: { ...event, ...(event.detail ? { detail: localize(event.detail) } : {}) } });
    else say(formatPhase(event));
  };
  if (!json) say(`${verb === 'upgrade' ? 'Upgrading' : 'Downgrading'} to ${target}`);
  try {
    const result = await (verb === 'upgrade'
      ? request(root, 'upgrade', { source: target, commit }, { timeoutMs: 10 * 60_000, onEvent })
      : request(root, 'downgrade', { version: target, commit }, { timeoutMs: 10 * 60_000, onEvent }));
    if (json) {
      sayJson({ ok: true, ...result, steps: events });
      return EXIT.ok;
    }
    for (const service of result.report.services) {
      say(`  ${formatServiceSwap(service)}`);
    }
    say(result.committed ? `Release ${result.to} is running and permanent.` : `Release ${result.to} is running on trial: 'kernel commit' makes it permanent; a restart goes back to the permanent release.`);
    return EXIT.ok;
  } catch (error) {
    if (!(error instanceof TheseusError)) throw error;
    if (json) {
      sayJson({ ok: false, error: { code: error.code, message: localize(error.message), phase: error.phase ?? null }, steps: events });
    } else {
      process.stderr.write(`${localize(swapFailure(verb, error))}\n`);
    }
    return EXIT.failure;
  }
}

async function kernelVersion(): Promise<string> {
  // A deploy root's bundle carries the version it was built from (release/build.ts writes it in);
  // the package.json two folders up from lib/ would be whatever folder the root was unpacked in.
  if (bundledRoot) return process.env.THESEUS_KERNEL_VERSION || 'unknown (this kernel was bundled without its version)';
  const { readFile } = await import('node:fs/promises');
  const text = await readFile(new URL('../../package.json', import.meta.url), 'utf8').catch(() => null);
  return text ? (JSON.parse(text) as { version: string }).version : 'unknown (no package.json beside the kernel)';
}

/** The verbs offered where this CLI runs: a deploy root does not build releases. */
function offered(): Array<[string, Verb]> {
  return Object.entries(verbs).filter(([, verb]) => !(bundledRoot && verb.projectOnly));
}

function usage(): string {
  const list = offered();
  const width = Math.max(...list.map(([name]) => name.length));
  const lines = list.map(([name, verb]) => `  ${name.padEnd(width)}  ${verb.summary}`);
  const command = commandName();
  return [
    `Usage: ${command} <verb> [options]`,
    '',
    'Theseus: hot upgrades for long-lived, stateful Node.js services.',
    '',
    'Verbs:',
    ...lines,
    '',
    `'${command} help <verb>' (or '${command} <verb> --help') shows a verb's usage. '${command} --version' prints the version.`,
    'Exit codes: 0 ok, 1 failure, 2 usage error.',
  ].join('\n');
}

function verbHelp(name: string, verb: Verb): string {
  const args = (verb.args ?? []).map((a) => ` ${a.name}`).join('');
  const lines = [`Usage: ${commandName()} ${name}${args}${verb.options ? ' [options]' : ''}`, '', `${verb.summary[0]!.toUpperCase()}${verb.summary.slice(1)}.`];
  const options = Object.entries(verb.options ?? {});
  lines.push('', 'Options:');
  for (const [option, spec] of options) {
    const flag = `${spec.short ? `-${spec.short}, ` : ''}--${option}${spec.type === 'string' ? ` <${spec.placeholder ?? 'value'}>` : ''}`;
    lines.push(`  ${flag.padEnd(26)} ${spec.description}`);
  }
  lines.push(`  ${'-h, --help'.padEnd(26)} show this help`);
  return lines.join('\n');
}

/** The verb named `name`, where this CLI runs; a usage error naming the closest one otherwise. */
function findVerb(name: string): Verb {
  const verb = Object.hasOwn(verbs, name) ? verbs[name]! : null;
  if (verb?.projectOnly && bundledRoot) throw theseusError('E_VERB_NOT_IN_DEPLOY_ROOT', name, verb.projectOnly, bundledRoot);
  if (verb) return verb;
  const suggestion = closest(name, offered().map(([known]) => known));
  throw usageError(null, `unknown verb '${name}'${suggestion ? `; did you mean '${suggestion}'?` : ''}`);
}

async function main(argv: string[]): Promise<number> {
  const [verbName, ...rest] = argv;
  if (verbName === undefined) {
    say(usage());
    return EXIT.usage;
  }
  if (verbName === '--help' || verbName === '-h') {
    say(usage());
    return EXIT.ok;
  }
  if (verbName === '--version') return verbs.version!.run({}, []);
  // --json asks for JSON on failure too: a usage error included, whatever verb it came from.
  const json = rest.includes('--json');
  const fail = (error: TheseusError, exit: number) => {
    const message = localize(error.message);
    if (json && (verbName === 'upgrade' || verbName === 'downgrade')) sayJson({ ok: false, error: { code: error.code, message, phase: error.phase ?? null }, steps: [] });
    else if (json) sayJson({ ok: false, error: { code: error.code, message } });
    else process.stderr.write(`kernel${error.code === 'E_USAGE' && !Object.hasOwn(verbs, verbName) ? '' : ` ${verbName}`}: ${message} [${error.code}]\n`);
    return exit;
  };
  try {
    const verb = findVerb(verbName);
    if (rest.includes('--help') || rest.includes('-h')) {
      say(verbHelp(verbName, verb));
      return EXIT.ok;
    }
    if (verbName === 'help') {
      const [about, ...extra] = rest;
      if (extra.length > 0) throw usageError('help', `unexpected argument${extra.length > 1 ? 's' : ''} ${extra.map((a) => `'${a}'`).join(', ')} (help takes one verb)`);
      say(about === undefined ? usage() : verbHelp(about, findVerb(about)));
      return EXIT.ok;
    }
    const { values, positionals } = parseVerbArgs(verbName, rest, verb.options ?? {}, verb.args ?? []);
    return await verb.run(values, positionals);
  } catch (error) {
    if (!(error instanceof TheseusError)) {
      // A bug of the CLI's own: its stack, and with --json still a JSON line a script can read.
      if (json) sayJson({ ok: false, error: { code: 'E_INTERNAL', message: error instanceof Error ? error.message : String(error) } });
      throw error;
    }
    // A user error: one line with its code, never a stack trace.
    return fail(error, error.code === 'E_USAGE' || error.code === 'E_VERB_NOT_IN_DEPLOY_ROOT' ? EXIT.usage : EXIT.failure);
  }
}

// `kernel status | head -1` closes the pipe early: that is the reader being done, not an error.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw error;
});

process.exitCode = await main(process.argv.slice(2));
