// `kernel <verb>`: the command line. Runs in the CLI's own process (or, for `foreground`, it is
// the kernel's process). Each verb parses its arguments, runs, and always cleans up; a user error
// prints one line and exits 1, an internal error prints its stack.

import { rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { TheseusError } from '../common/errors.ts';
import { resolveDeployRoot, startFromRoot } from '../main/deploy-root.ts';
import { DEFAULT_CONFIG_FILE } from '../release/config.ts';
import { readRegistry, withoutRelease, writeRegistry } from '../release/registry.ts';

/** Exit codes, documented in the README. */
export const EXIT = {
  ok: 0,
  failure: 1,
  usage: 2,
  notImplemented: 3,
} as const;

/** parseArgs's option spec, plus the line `--help` prints for it. */
type Options = Record<string, { type: 'string' | 'boolean'; description: string }>;

function parseOptions(options: Options): NonNullable<ParseArgsConfig['options']> {
  return Object.fromEntries(Object.entries(options).map(([name, { type }]) => [name, { type }]));
}

interface Verb {
  summary: string;
  usage?: string;
  options?: Options;
  /** Not built yet: the issue that brings it. */
  plannedIn?: string;
  run?(values: Record<string, string | boolean | undefined>, positionals: string[]): Promise<number>;
}

const rootOption: Options = { root: { type: 'string', description: 'deploy root (default: $THESEUS_ROOT, else the current folder)' } };

const say = (line: string) => process.stdout.write(`${line}\n`);

const verbs: Record<string, Verb> = {
  start: { summary: 'start the kernel as a daemon on the permanent release', plannedIn: 'issue 4' },
  foreground: {
    summary: 'run the kernel in the foreground on the permanent release, until SIGINT or SIGTERM',
    options: rootOption,
    async run(values) {
      const root = resolveDeployRoot(values.root as string | undefined);
      const booted = await startFromRoot(root);
      if (booted.revertedTrial) say(`Release ${booted.revertedTrial} was on trial (not committed) and was reverted.`);
      const services = Object.entries(booted.manifest.services).map(([name, service]) => `${name} (vsn ${service.vsn})`);
      say(`kernel ready: ${booted.manifest.app} ${booted.version}, pid ${process.pid}, services: ${services.join(', ')}`);
      await new Promise<void>((done) => {
        const stop = () => done();
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
      await booted.kernel.stop();
      say('kernel stopped');
      return EXIT.ok;
    },
  },
  stop: { summary: 'drain the services, end them cleanly and exit', plannedIn: 'issue 4' },
  ping: { summary: 'check that the kernel answers', plannedIn: 'issue 4' },
  pid: { summary: "print the kernel's process id", plannedIn: 'issue 4' },
  status: { summary: 'show the release and every service', plannedIn: 'issue 4' },
  upgrade: { summary: 'hot-upgrade the running kernel to a release (folder, tarball or version)', plannedIn: 'issue 4' },
  downgrade: { summary: 'hot-downgrade the running kernel to an installed release', plannedIn: 'issue 4' },
  commit: { summary: 'make the release on trial permanent', plannedIn: 'issue 4' },
  releases: {
    summary: 'list the releases installed in the deploy root',
    options: { ...rootOption, json: { type: 'boolean', description: 'print JSON' } },
    async run(values) {
      const registry = await readRegistry(resolveDeployRoot(values.root as string | undefined));
      if (values.json) {
        say(JSON.stringify(registry.releases));
        return EXIT.ok;
      }
      if (registry.releases.length === 0) {
        say('No releases installed.');
        return EXIT.ok;
      }
      const rows = [['VERSION', 'STATUS', 'INSTALLED', 'MANIFEST'], ...registry.releases.map((r) => [r.version, r.status, r.installedAt, r.manifestSha256.slice(0, 12)])];
      const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
      for (const row of rows) say(row.map((cell, column) => cell.padEnd(widths[column]!)).join('  ').trimEnd());
      return EXIT.ok;
    },
  },
  remove: {
    summary: 'remove an installed release (never the permanent or the current one)',
    usage: '<version>',
    options: rootOption,
    async run(values, positionals) {
      const version = positionals[0];
      if (!version) throw new UsageError('kernel remove: which version? Usage: kernel remove <version>');
      const root = resolveDeployRoot(values.root as string | undefined);
      const registry = withoutRelease(await readRegistry(root), version);
      // The registry first: a release it no longer lists is never booted, even if the delete below is cut short.
      await writeRegistry(root, registry);
      await rm(join(root, 'releases', version), { recursive: true, force: true });
      say(`Removed release ${version}.`);
      return EXIT.ok;
    },
  },
  console: { summary: 'attach a REPL to the running kernel', plannedIn: 'issue 5' },
  logs: { summary: "show the kernel's logs", plannedIn: 'issue 4' },
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
  version: {
    summary: "print Theseus's version",
    async run() {
      say(await kernelVersion());
      return EXIT.ok;
    },
  },
};

class UsageError extends Error {}

async function kernelVersion(): Promise<string> {
  const { readFile } = await import('node:fs/promises');
  const text = await readFile(new URL('../../package.json', import.meta.url), 'utf8').catch(() => null);
  return text ? (JSON.parse(text) as { version: string }).version : 'bundled';
}

function usage(): string {
  const width = Math.max(...Object.keys(verbs).map((name) => name.length));
  const lines = Object.entries(verbs).map(
    ([name, verb]) => `  ${name.padEnd(width)}  ${verb.summary}${verb.plannedIn ? `  (not built yet: ${verb.plannedIn})` : ''}`,
  );
  return [
    'Usage: kernel <verb> [options]',
    '',
    'Theseus: hot upgrades for long-lived, stateful Node.js services.',
    '',
    'Verbs:',
    ...lines,
    '',
    'Every verb takes --help. Exit codes: 0 ok, 1 failure, 2 usage error, 3 verb not built yet.',
  ].join('\n');
}

function verbHelp(name: string, verb: Verb): string {
  const lines = [`Usage: kernel ${name}${verb.usage ? ` ${verb.usage}` : ''}${verb.options ? ' [options]' : ''}`, '', `${verb.summary}.`];
  if (verb.plannedIn) lines.push('', `Not built yet: arrives with ${verb.plannedIn}.`);
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
  if (verb.plannedIn || !verb.run) {
    process.stderr.write(`kernel ${verbName}: not built yet (${verb.plannedIn}). Use the Kernel API from kernel/index.ts meanwhile.\n`);
    return EXIT.notImplemented;
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

process.exitCode = await main(process.argv.slice(2));
