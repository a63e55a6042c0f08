// `kernel <verb>`: the command line. Runs in the CLI's own process (or, for `foreground`, it is
// the kernel's process). Each verb parses its arguments, runs, and always cleans up; a user error
// prints one line and exits 1, an internal error prints its stack.

import { rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { PhaseEvent } from '../common/control-protocol.ts';
import { TheseusError, theseusError } from '../common/errors.ts';
import { DEFAULT_CONFIG_FILE, isAlive, resolveDeployRoot } from '../common/deploy-paths.ts';
import { request } from './control-client.ts';
import { formatPhase, formatReleases, formatServiceSwap, formatStatus } from './format.ts';

/** Exit codes, documented in the README. */
export const EXIT = {
  ok: 0,
  failure: 1,
  usage: 2,
} as const;

/** parseArgs's option spec, plus the line `--help` prints for it. */
type Options = Record<string, { type: 'string' | 'boolean'; description: string; short?: string }>;

function parseOptions(options: Options): NonNullable<ParseArgsConfig['options']> {
  return Object.fromEntries(Object.entries(options).map(([name, { type, short }]) => [name, short ? { type, short } : { type }]));
}

interface Verb {
  summary: string;
  usage?: string;
  options?: Options;
  run(values: Record<string, string | boolean | undefined>, positionals: string[]): Promise<number>;
}

const rootOption: Options = { root: { type: 'string', description: 'deploy root (default: $THESEUS_ROOT, else the current folder)' } };

const say = (line: string) => process.stdout.write(`${line}\n`);

const rootArg = (values: Record<string, string | boolean | undefined>) => resolveDeployRoot(values.root as string | undefined);

const verbs: Record<string, Verb> = {
  start: {
    summary: 'start the kernel as a daemon on the permanent release, and return once it is ready',
    options: rootOption,
    async run(values) {
      const { startDaemon } = await import('./start.ts');
      const root = rootArg(values);
      const { pid, release, notes } = await startDaemon(root, say);
      for (const note of notes) say(note);
      say(`Kernel started: pid ${pid}, release ${release}, root ${root}`);
      say(`  status: kernel status   logs: kernel logs -f   stop: kernel stop   (with --root ${root} from elsewhere)`);
      return EXIT.ok;
    },
  },
  foreground: {
    summary: 'run the kernel in the foreground on the permanent release, until SIGINT or SIGTERM (for systemd and containers)',
    options: rootOption,
    async run(values) {
      const { KernelDaemon } = await import('../main/daemon.ts');
      const daemon = await KernelDaemon.start({ root: rootArg(values), terminal: Boolean(process.stdout.isTTY) });
      if (daemon.revertedTrial) say(`Release ${daemon.revertedTrial} was on trial (not committed) and was reverted.`);
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
    options: { ...rootOption, json: { type: 'boolean', description: 'print JSON' } },
    async run(values) {
      const status = await request(rootArg(values), 'status', {});
      if (values.json) {
        say(JSON.stringify(status));
        return EXIT.ok;
      }
      for (const line of formatStatus(status)) say(line);
      return EXIT.ok;
    },
  },
  upgrade: {
    summary: 'hot-upgrade the running kernel to a release (folder, tarball or installed version)',
    usage: '<folder|tarball|version>',
    options: { ...rootOption, 'no-commit': { type: 'boolean', description: 'leave the release on trial; kernel commit makes it permanent' }, json: { type: 'boolean', description: 'print the result as JSON' } },
    async run(values, positionals) {
      const source = positionals[0];
      if (!source) throw new UsageError('kernel upgrade: which release? Usage: kernel upgrade <folder|tarball|version>');
      // A path is resolved here: the kernel's working folder is not the CLI's.
      const { existsSync } = await import('node:fs');
      return swapVerb('upgrade', rootArg(values), existsSync(source) ? resolve(source) : source, !values['no-commit'], Boolean(values.json));
    },
  },
  downgrade: {
    summary: 'hot-downgrade the running kernel to an installed release',
    usage: '<version>',
    options: { ...rootOption, 'no-commit': { type: 'boolean', description: 'leave the release on trial' }, json: { type: 'boolean', description: 'print the result as JSON' } },
    async run(values, positionals) {
      const version = positionals[0];
      if (!version) throw new UsageError('kernel downgrade: to which version? Usage: kernel downgrade <version>');
      return swapVerb('downgrade', rootArg(values), version, !values['no-commit'], Boolean(values.json));
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
    options: { ...rootOption, json: { type: 'boolean', description: 'print JSON' } },
    async run(values) {
      const root = rootArg(values);
      // Through the kernel when one runs (it knows which release is running); else the registry file.
      const releases = await request(root, 'releases', {}, { timeoutMs: 5000 }).catch(async (error: unknown) => {
        if (error instanceof TheseusError && error.code === 'E_KERNEL_NOT_RUNNING') {
          const { readRegistry } = await import('../release/registry.ts');
          return (await readRegistry(root)).releases.map((r) => ({ ...r, running: false }));
        }
        throw error;
      });
      if (values.json) {
        say(JSON.stringify(releases));
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
    usage: '<version>',
    options: rootOption,
    async run(values, positionals) {
      const version = positionals[0];
      if (!version) throw new UsageError('kernel remove: which version? Usage: kernel remove <version>');
      const root = rootArg(values);
      try {
        await request(root, 'remove', { version });
      } catch (error) {
        if (!(error instanceof TheseusError && error.code === 'E_KERNEL_NOT_RUNNING')) throw error;
        // No kernel: edit the registry directly. The registry first, so a release it no longer
        // lists is never booted, even if the delete below is cut short.
        const { readRegistry, withoutRelease, writeRegistry } = await import('../release/registry.ts');
        await writeRegistry(root, withoutRelease(await readRegistry(root), version));
        await rm(join(root, 'releases', version), { recursive: true, force: true });
      }
      say(`Removed release ${version}.`);
      return EXIT.ok;
    },
  },
  logs: {
    summary: "show the kernel's log (var/log/kernel.log); -f follows it",
    options: { ...rootOption, follow: { type: 'boolean', short: 'f', description: 'keep printing new lines (-f)' }, lines: { type: 'string', short: 'n', description: 'how many lines to show first (default 50)' } },
    async run(values) {
      const { showLogs } = await import('./logs.ts');
      await showLogs(rootArg(values), { follow: Boolean(values.follow), lines: Number(values.lines ?? 50) });
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
    options: {
      config: { type: 'string', description: `file to write (default: ${DEFAULT_CONFIG_FILE})` },
      force: { type: 'boolean', description: 'overwrite an existing file' },
    },
    async run(values) {
      const { writeInitialConfig } = await import('../release/init.ts');
      const { file, services } = await writeInitialConfig(process.cwd(), {
        ...(values.config ? { file: values.config as string } : {}),
        force: Boolean(values.force),
      });
      say(`Wrote ${file}${services.length > 0 ? ` with services: ${services.join(', ')}` : ' (no services found under services/; add them)'}.`);
      say("Review it, then run 'kernel release' to build a release.");
      return EXIT.ok;
    },
  },
  release: {
    summary: 'build releases/<version>/ with esbuild: bundles, manifest, upgrade plan and tarball',
    options: {
      config: { type: 'string', description: `release configuration (default: ${DEFAULT_CONFIG_FILE})` },
      out: { type: 'string', description: 'folder for releases/<version>/ (default: ./releases)' },
      upfrom: { type: 'string', description: 'plan the upgrade from this release (default: the newest earlier one)' },
      'include-node': { type: 'boolean', description: 'put this Node.js binary in the tarball' },
      sign: { type: 'string', description: 'sign manifest.json with this ed25519 private key (PEM)' },
      json: { type: 'boolean', description: 'print the result as JSON' },
    },
    async run(values) {
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
        say(JSON.stringify({ version: result.version, dir: result.dir, tarball: result.tarball, built: result.built, plan: result.plan, steps: result.steps, totalMs: result.totalMs }));
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
      user: { type: 'string', description: 'the user the kernel runs as (default: the current user)' },
      group: { type: 'string', description: 'its group (default: the user\'s own)' },
      'stop-grace-ms': { type: 'string', description: "how long a stop answers health 'draining' before the HTTP listeners close (default 0)" },
      node: { type: 'string', description: 'the Node.js binary (default: the release\'s bundled one, else the one running this command)' },
    },
    async run(values) {
      const { systemdUnit } = await import('./systemd-unit.ts');
      const grace = values['stop-grace-ms'] as string | undefined;
      if (grace !== undefined && !/^\d+$/.test(grace)) throw new UsageError(`kernel systemd-unit: --stop-grace-ms takes a whole number of milliseconds, not '${grace}'.`);
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
    summary: "print Theseus's version",
    async run() {
      say(await kernelVersion());
      return EXIT.ok;
    },
  },
};

class UsageError extends Error {}

/**
 * upgrade and downgrade: print each phase with its time as it ends, then each service's pause.
 * With --json, one JSON line per phase as it ends ({"phase": ...}), then one line with the result
 * (or the error): scripts read the last line; the phases are repeated there in `steps`.
 */
async function swapVerb(verb: 'upgrade' | 'downgrade', root: string, target: string, commit: boolean, json: boolean): Promise<number> {
  const events: PhaseEvent[] = [];
  const onEvent = (event: PhaseEvent) => {
    events.push(event);
    say(json ? JSON.stringify({ phase: event }) : formatPhase(event));
  };
  if (!json) say(`${verb === 'upgrade' ? 'Upgrading' : 'Downgrading'} to ${target}`);
  try {
    const result = await (verb === 'upgrade'
      ? request(root, 'upgrade', { source: target, commit }, { timeoutMs: 10 * 60_000, onEvent })
      : request(root, 'downgrade', { version: target, commit }, { timeoutMs: 10 * 60_000, onEvent }));
    if (json) {
      say(JSON.stringify({ ok: true, ...result, steps: events }));
      return EXIT.ok;
    }
    for (const service of result.report.services) {
      say(`  ${formatServiceSwap(service)}`);
    }
    say(result.committed ? `Release ${result.to} is running and permanent.` : `Release ${result.to} is running on trial: 'kernel commit' makes it permanent; a restart goes back to the permanent release.`);
    return EXIT.ok;
  } catch (error) {
    if (json && error instanceof TheseusError) {
      say(JSON.stringify({ ok: false, error: { code: error.code, message: error.message, phase: error.phase ?? null }, steps: events }));
      return EXIT.failure;
    }
    if (error instanceof TheseusError && error.phase) {
      process.stderr.write(`kernel ${verb}: failed in phase '${error.phase}': ${error.message} [${error.code}]\n`);
      return EXIT.failure;
    }
    throw error;
  }
}

async function kernelVersion(): Promise<string> {
  const { readFile } = await import('node:fs/promises');
  const text = await readFile(new URL('../../package.json', import.meta.url), 'utf8').catch(() => null);
  return text ? (JSON.parse(text) as { version: string }).version : 'bundled';
}

function usage(): string {
  const width = Math.max(...Object.keys(verbs).map((name) => name.length));
  const lines = Object.entries(verbs).map(
    ([name, verb]) => `  ${name.padEnd(width)}  ${verb.summary}`,
  );
  return [
    'Usage: kernel <verb> [options]',
    '',
    'Theseus: hot upgrades for long-lived, stateful Node.js services.',
    '',
    'Verbs:',
    ...lines,
    '',
    'Every verb takes --help. Exit codes: 0 ok, 1 failure, 2 usage error.',
  ].join('\n');
}

function verbHelp(name: string, verb: Verb): string {
  const lines = [`Usage: kernel ${name}${verb.usage ? ` ${verb.usage}` : ''}${verb.options ? ' [options]' : ''}`, '', `${verb.summary}.`];
  const options = Object.entries(verb.options ?? {});
  if (options.length > 0) {
    lines.push('', 'Options:');
    for (const [option, spec] of options) {
      const flag = `--${option}${spec.type === 'string' ? ' <value>' : ''}`;
      lines.push(`  ${flag.padEnd(22)} ${spec.description}`);
    }
  }
  lines.push(`  ${'--help'.padEnd(22)} show this help`);
  return lines.join('\n');
}

async function main(argv: string[]): Promise<number> {
  const [verbName, ...rest] = argv;
  if (verbName === undefined || verbName === '--help' || verbName === '-h' || verbName === 'help') {
    say(usage());
    return verbName === undefined ? EXIT.usage : EXIT.ok;
  }
  const verb = verbs[verbName];
  if (!verb) {
    process.stderr.write(`kernel: unknown verb '${verbName}'. Run 'kernel --help' for the list.\n`);
    return EXIT.usage;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    say(verbHelp(verbName, verb));
    return EXIT.ok;
  }
  let parsed: { values: Record<string, string | boolean | undefined>; positionals: string[] };
  try {
    parsed = parseArgs({ args: rest, options: parseOptions(verb.options ?? {}), allowPositionals: true, strict: true }) as typeof parsed;
  } catch (error) {
    process.stderr.write(`kernel ${verbName}: ${(error as Error).message}. Run 'kernel ${verbName} --help'.\n`);
    return EXIT.usage;
  }
  try {
    return await verb.run(parsed.values, parsed.positionals);
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`${error.message}\n`);
      return EXIT.usage;
    }
    if (error instanceof TheseusError) {
      // A user error: one line with its code, never a stack trace.
      process.stderr.write(`kernel ${verbName}: ${error.message} [${error.code}]\n`);
      return EXIT.failure;
    }
    throw error;
  }
}

// `kernel status | head -1` closes the pipe early: that is the reader being done, not an error.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw error;
});

process.exitCode = await main(process.argv.slice(2));
