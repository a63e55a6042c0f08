// `kernel <verb>`: the command line. Runs in the CLI's own process (never inside the kernel).
// Each verb parses its arguments, runs, and always cleans up; a user error prints one line and
// exits with a documented code, an internal error prints its stack.

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

export const EXIT = {
  ok: 0,
  failure: 1,
  usage: 2,
  notImplemented: 3,
} as const;

interface Verb {
  summary: string;
  /** Not built yet: the issue that brings it. */
  plannedIn?: string;
}

const verbs: Record<string, Verb> = {
  start: { summary: 'start the kernel as a daemon on the permanent release', plannedIn: 'issue 4' },
  foreground: { summary: 'run the kernel in the foreground', plannedIn: 'issue 4' },
  stop: { summary: 'drain the services, end them cleanly and exit', plannedIn: 'issue 4' },
  ping: { summary: 'check that the kernel answers', plannedIn: 'issue 4' },
  pid: { summary: "print the kernel's process id", plannedIn: 'issue 4' },
  status: { summary: 'show the release and every service', plannedIn: 'issue 4' },
  upgrade: { summary: 'hot-upgrade the running kernel to a release (folder, tarball or version)', plannedIn: 'issue 4' },
  downgrade: { summary: 'hot-downgrade the running kernel to an installed release', plannedIn: 'issue 4' },
  commit: { summary: 'make the release on trial permanent', plannedIn: 'issue 4' },
  releases: { summary: 'list installed releases', plannedIn: 'issue 4' },
  remove: { summary: 'remove an installed release', plannedIn: 'issue 4' },
  console: { summary: 'attach a REPL to the running kernel', plannedIn: 'issue 5' },
  logs: { summary: "show the kernel's logs", plannedIn: 'issue 4' },
  init: { summary: 'write the release configuration', plannedIn: 'issue 3' },
  release: { summary: 'build a release with esbuild', plannedIn: 'issue 3' },
  version: { summary: "print Theseus's version" },
};

function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
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

function main(argv: string[]): number {
  const [verbName, ...rest] = argv;
  if (verbName === undefined || verbName === '--help' || verbName === '-h' || verbName === 'help') {
    process.stdout.write(`${usage()}\n`);
    return verbName === undefined ? EXIT.usage : EXIT.ok;
  }
  const verb = verbs[verbName];
  if (!verb) {
    process.stderr.write(`kernel: unknown verb '${verbName}'. Run 'kernel --help' for the list.\n`);
    return EXIT.usage;
  }
  const { values } = parseArgs({ args: rest, options: { help: { type: 'boolean', short: 'h' } }, strict: false });
  if (values.help) {
    process.stdout.write(`Usage: kernel ${verbName} [options]\n\n${verb.summary}.\n${verb.plannedIn ? `\nNot built yet: arrives with ${verb.plannedIn}.\n` : ''}`);
    return EXIT.ok;
  }
  if (verb.plannedIn) {
    process.stderr.write(`kernel ${verbName}: not built yet (${verb.plannedIn}). Use the Kernel API from kernel/index.ts meanwhile.\n`);
    return EXIT.notImplemented;
  }
  if (verbName === 'version') {
    process.stdout.write(`${packageVersion()}\n`);
    return EXIT.ok;
  }
  return EXIT.ok;
}

process.exitCode = main(process.argv.slice(2));
