// `kernel console`, driven through tmux the way a person would: the real `bin/kernel` of a deploy
// root unpacked from a release tarball, typed into a terminal with send-keys and read back from the
// screen with capture-pane. Needs tmux (.ci/run installs it).
//
// Every wait polls the screen against a generous deadline; nothing asserts how long anything took.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { extract } from 'tar';
import { sharedExamples, tempDir } from '../release/helpers.ts';

const DEADLINE_MS = 20_000;
const POLL_MS = 75;

const built = sharedExamples();
const roots: string[] = [];
const terminals: Terminal[] = [];

after(() => {
  // Never leave a tmux server or a kernel behind, whatever failed.
  for (const terminal of terminals) terminal.kill();
  for (const root of roots) cli(root, 'stop');
});

async function deployRoot(): Promise<string> {
  const { results } = await built;
  const root = await tempDir('theseus-console-');
  await extract({ file: results[0]!.tarball, cwd: root });
  roots.push(root);
  return root;
}

function cli(root: string, ...args: string[]) {
  return spawnSync(join(root, 'bin', 'kernel'), args, { cwd: root, encoding: 'utf8', timeout: 60_000, env: { ...process.env, THESEUS_ROOT: '' } });
}

/** A shell in a tmux session on a private server (its own socket), so tests never share one. */
class Terminal {
  readonly #server = `theseus-console-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  readonly #socket: string;

  constructor(cwd: string) {
    terminals.push(this);
    // No user configuration; wide enough that the one-line errors are one line on screen too.
    this.#tmux('-f', '/dev/null', 'new-session', '-d', '-s', 'console', '-x', '220', '-y', '50', '-c', cwd, 'bash --norc --noprofile');
    this.#socket = this.#tmux('display-message', '-p', '#{socket_path}').trim();
  }

  /** Types text as it is (no key names). */
  type(text: string): void {
    this.#tmux('send-keys', '-t', 'console', '-l', text);
  }

  /** Presses keys by name: Enter, Tab, C-c, C-d, Up... */
  press(...keys: string[]): void {
    this.#tmux('send-keys', '-t', 'console', ...keys);
  }

  /** The whole pane, scrollback included, with wrapped lines joined. */
  screen(): string {
    return this.#tmux('capture-pane', '-p', '-J', '-S', '-', '-t', 'console');
  }

  /** The same, with the colours: what was typed or inserted is plain; a completion preview is grey. */
  screenWithColours(): string {
    return this.#tmux('capture-pane', '-p', '-J', '-e', '-S', '-', '-t', 'console');
  }

  /** Polls the screen until `check` holds; fails with the screen when the deadline passes. */
  async waitFor(what: string, check: (screen: string) => boolean, read: () => string = () => this.screen()): Promise<string> {
    const deadline = Date.now() + DEADLINE_MS;
    for (;;) {
      const screen = read();
      if (check(screen)) return screen;
      if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}; the screen:\n${screen}`);
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  }

  /** Presses `key`, waits a while for `check`, and presses it again until it holds or the deadline passes. */
  async pressUntil(key: string, what: string, check: (screen: string) => boolean): Promise<string> {
    const deadline = Date.now() + DEADLINE_MS;
    for (;;) {
      this.press(key);
      const pressed = Date.now();
      while (Date.now() - pressed < 1000) {
        const screen = this.screen();
        if (check(screen)) return screen;
        await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      }
      if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}; the screen:\n${this.screen()}`);
    }
  }

  /** Waits until `pattern` occurs at least `count` times on the screen. */
  waitForCount(what: string, pattern: RegExp, count: number): Promise<string> {
    return this.waitFor(what, (screen) => occurrences(screen, pattern) >= count);
  }

  /** Ends the tmux server, and the console if it still runs; tmux leaves its socket file behind. */
  kill(): void {
    spawnSync('tmux', ['-L', this.#server, 'kill-server'], { encoding: 'utf8' });
    if (this.#socket) rmSync(this.#socket, { force: true });
  }

  #tmux(...args: string[]): string {
    const result = spawnSync('tmux', ['-L', this.#server, ...args], { encoding: 'utf8', timeout: 10_000, env: { ...process.env, THESEUS_ROOT: '' } });
    if (result.error) throw result.error;
    assert.equal(result.status, 0, `tmux ${args.join(' ')}: ${result.stderr}`);
    return result.stdout;
  }
}

function occurrences(text: string, pattern: RegExp): number {
  return [...text.matchAll(new RegExp(pattern.source, `${pattern.flags.replace('g', '')}g`))].length;
}

const PROMPT = 'theseus> ';
const REPLY = /^'The next number is \d+'$/m;
const atPrompt = (screen: string) => screen.trimEnd().split('\n').at(-1) === PROMPT.trimEnd();

test('kernel console: call, complete, survive an error, watch an upgrade from another shell, run commands, leave with the kernel still up', { timeout: 240_000 }, async () => {
  const { results } = await built;
  const root = await deployRoot();
  const started = cli(root, 'start');
  assert.equal(started.status, 0, started.stderr + started.stdout);
  // 0.2.0 answers in sentences.
  const upgraded = cli(root, 'upgrade', results[1]!.tarball);
  assert.equal(upgraded.status, 0, upgraded.stderr + upgraded.stdout);

  const terminal = new Terminal(root);
  terminal.type('bin/kernel console; echo CONSOLE-EXITED-$?');
  terminal.press('Enter');
  const banner = await terminal.waitFor('the banner and the prompt', atPrompt);
  assert.match(banner, /Theseus console: sequence 0\.2\.0/);
  assert.match(banner, /sequence\s+0\.2\.0 \(vsn 0\)\s+calls: nextNumber, httpNext, httpIncrement\s+casts: incrementNumber/);
  assert.match(banner, /\.help/);

  // A call, and its reply.
  terminal.type('await sequence.nextNumber()');
  terminal.press('Enter');
  await terminal.waitForCount('the first reply', REPLY, 1);
  await terminal.waitFor('the prompt after the reply', atPrompt);

  // Completion of a call name. The REPL previews a single completion in grey before Tab is
  // pressed, so the check looks for it as plain text, and then runs it: only the completed name
  // answers with a number (`sequence.next()` would be an unknown method).
  terminal.type('await sequence.next');
  terminal.press('Tab');
  await terminal.waitFor('sequence.next<Tab> to complete to sequence.nextNumber', (screen) => lastPromptLine(screen).endsWith(`${PROMPT}await sequence.nextNumber`), () => terminal.screenWithColours());
  assert.equal(lastPromptLine(terminal.screen()), `${PROMPT}await sequence.nextNumber`);
  terminal.type('()');
  terminal.press('Enter');
  await terminal.waitForCount('the reply to the completed call', REPLY, 2);
  await terminal.waitFor('the prompt', atPrompt);

  // Completion of a service name.
  terminal.type('await seq');
  terminal.press('Tab');
  await terminal.waitFor('seq<Tab> to complete to sequence', (screen) => lastPromptLine(screen).endsWith(`${PROMPT}await sequence`), () => terminal.screenWithColours());
  terminal.type('.nextNumber()');
  terminal.press('Enter');
  await terminal.waitForCount('the reply to the call on the completed service', REPLY, 3);
  await terminal.waitFor('the prompt', atPrompt);

  // A second Tab on `sequence.` lists its calls and casts (Tab again until it does: readline
  // only lists when the previous key was a Tab it had finished with); Ctrl-U clears the line.
  terminal.type('sequence.');
  await terminal.waitFor('sequence.', (screen) => lastPromptLine(screen) === `${PROMPT}sequence.`);
  terminal.press('Tab');
  await terminal.pressUntil('Tab', 'the list of sequence.<Tab><Tab>', (screen) => /^sequence\.httpIncrement\s+sequence\.httpNext\s+sequence\.incrementNumber\s+sequence\.nextNumber\s*$/m.test(screen));
  terminal.press('C-u');
  await terminal.waitFor('the cleared prompt', atPrompt);

  // An unknown method: one line with its code, then the REPL carries on.
  terminal.type('await sequence.nope()');
  terminal.press('Enter');
  const failed = await terminal.waitFor('the one-line error', (screen) => /E_UNKNOWN_METHOD/.test(screen) && atPrompt(screen));
  assert.match(failed, /^Uncaught Error \[E_UNKNOWN_METHOD\]: Service 'sequence' has no call or cast named 'nope'[^\n]*\ntheseus> /m, 'one line, then the prompt');
  assert.doesNotMatch(failed, /^\s+at /m, 'no stack trace');
  // An argument JSON would change on the way (a Date) is refused in the console, with the reason.
  terminal.type('await sequence.nextNumber(new Date(0))');
  terminal.press('Enter');
  const refused = await terminal.waitFor('the refused argument', (screen) => /E_CONSOLE_ARGS_NOT_JSON/.test(screen) && atPrompt(screen));
  assert.match(refused, /^Uncaught Error \[E_CONSOLE_ARGS_NOT_JSON\]: Arguments to sequence\.nextNumber\(\) cannot be sent from the console: it sends them as JSON, and a Date is not JSON\./m);
  // A delta that is not an integer: the cast is refused, said in one line; the state stays a number.
  terminal.type("sequence.incrementNumber('10')");
  terminal.press('Enter');
  const badDelta = await terminal.waitFor('the refused cast', (screen) => /E_ARGS_INVALID/.test(screen) && atPrompt(screen));
  assert.match(badDelta, /^Error \[E_ARGS_INVALID\]: sequence\.incrementNumber\(\) was refused: argument 0 \(delta\) should be safe integer, and is the string "10"\./m);
  // `.help sequence`: its calls and casts, with their arguments.
  terminal.type('.help sequence');
  terminal.press('Enter');
  const serviceHelp = await terminal.waitFor("the service's help", (screen) => /^ {2}casts \(no reply\):$/m.test(screen) && atPrompt(screen));
  assert.match(serviceHelp, /^sequence 0\.2\.0 \(vsn 0\)\n {2}calls \(each replies\):\n {4}await sequence\.nextNumber\(\)$/m);
  assert.match(serviceHelp, /^ {4}sequence\.incrementNumber\(delta: safe integer\)\n {8}delta: added to the current number, once$/m);
  terminal.type('await sequence.nextNumber()');
  terminal.press('Enter');
  const afterRefusal = await terminal.waitForCount('a reply after the error', REPLY, 4);
  const numbers = [...afterRefusal.matchAll(/^'The next number is (\d+)'$/gm)].map((match) => Number(match[1]));
  assert.equal(numbers[3], numbers[2]! + 1, 'the refused cast changed nothing');
  await terminal.waitFor('the prompt', atPrompt);

  // An upgrade from another shell, while a line is half typed: the migration's log line appears
  // above the prompt, and the half-typed line is still there to finish.
  terminal.type('await sequence.nextN');
  await terminal.waitFor('the half-typed line', (screen) => lastPromptLine(screen).startsWith(`${PROMPT}await sequence.nextN`));
  const third = cli(root, 'upgrade', results[2]!.tarball);
  assert.equal(third.status, 0, third.stderr + third.stdout);
  const migrated = await terminal.waitFor("the migration's log line", (screen) => /Changing code from 0 to 1/.test(screen));
  assert.match(migrated, /^\[sequence@0\.3\.0\] info: Changing code from 0 to 1 \{"from":\d+,"to":\{"currentNumber":\d+,"delta":1\}\}$/m);
  await terminal.waitFor('the half-typed line, redrawn below the log lines', (screen) => lastPromptLine(screen).startsWith(`${PROMPT}await sequence.nextN`));
  terminal.type('umber()');
  terminal.press('Enter');
  await terminal.waitForCount('a reply from 0.3.0', REPLY, 5);
  await terminal.waitFor('the prompt', atPrompt);

  // Commands: .status, .help, and a downgrade without leaving the REPL.
  terminal.type('.status');
  terminal.press('Enter');
  const status = await terminal.waitFor('the status table', (screen) => /^SERVICE\s+STATE\s+RELEASE\s+VSN/m.test(screen) && atPrompt(screen));
  assert.match(status, /^sequence\s+running\s+0\.3\.0\s+1\s/m);
  terminal.type('.help');
  terminal.press('Enter');
  const help = await terminal.waitFor('the help', (screen) => /^\.upgrade\s/m.test(screen) && atPrompt(screen));
  for (const command of ['status', 'releases', 'services', 'upgrade', 'downgrade', 'commit', 'exit']) assert.match(help, new RegExp(`^\\.${command}\\s+\\S`, 'm'), `.help lists .${command}`);
  terminal.type('.downgrade 0.2.0');
  terminal.press('Enter');
  const downgraded = await terminal.waitFor('the downgrade and its log line', (screen) => /^Release 0\.2\.0 is running and permanent\.$/m.test(screen) && /Changing code from 1 to 0/.test(screen) && atPrompt(screen));
  assert.match(downgraded, /^Downgrading to 0\.2\.0$/m);
  assert.match(downgraded, /^ {2}switch\s+[\d.]+ ms/m, 'each step as it happened');
  // The table is whole: between its first line and its last, only its own indented rows.
  const lines = downgraded.split('\n');
  const table = lines.slice(lines.lastIndexOf('Downgrading to 0.2.0') + 1, lines.findLastIndex((line) => line.startsWith('Release 0.2.0 is running')));
  assert.ok(table.length > 0 && table.every((line) => line.startsWith('  ')), `no log line inside the table:\n${table.join('\n')}`);
  assert.ok(lines.findLastIndex((line) => line.includes('Changing code from 1 to 0')) > lines.findLastIndex((line) => line.startsWith('Release 0.2.0 is running')), "the migration's log line, after the table");

  // Ctrl-D leaves; the console exits 0 by itself and the kernel keeps running.
  terminal.press('C-d');
  await terminal.waitForCount('the console to exit', /^CONSOLE-EXITED-0$/m, 1);
  const ping = cli(root, 'ping');
  assert.equal(ping.status, 0, ping.stderr);

  // The history was kept, owner-only.
  const history = join(root, 'var', 'console_history');
  assert.equal((await stat(history)).mode & 0o777, 0o600);
  assert.match(await readFile(history, 'utf8'), /^await sequence\.nextNumber\(\)$/m);

  // Again: the history is loaded (Up recalls the last line), Ctrl-C on a line clears it, and
  // Ctrl-C on the empty prompt leaves at once.
  terminal.type('bin/kernel console; echo CONSOLE-EXITED-$?');
  terminal.press('Enter');
  await terminal.waitForCount('the second banner', /Theseus console: sequence 0\.2\.0/, 2);
  await terminal.waitFor('the prompt', atPrompt);
  terminal.press('Up');
  await terminal.waitFor('the last line of the previous session', (screen) => lastPromptLine(screen) === `${PROMPT}.downgrade 0.2.0`);
  terminal.press('C-c');
  await terminal.waitFor('the line to be cleared', atPrompt);
  assert.equal(occurrences(terminal.screen(), /^CONSOLE-EXITED-\d+$/m), 1, 'Ctrl-C on a line only clears it');
  terminal.press('C-c');
  await terminal.waitForCount('the console to exit on Ctrl-C', /^CONSOLE-EXITED-0$/m, 2);
  assert.equal(cli(root, 'ping').status, 0, 'the kernel is still up');

  const stopped = cli(root, 'stop');
  assert.equal(stopped.status, 0, stopped.stderr);
  terminal.kill();
});

test('kernel console with no kernel running says so in one line and exits 1', async () => {
  const root = await deployRoot();
  const result = cli(root, 'console');
  assert.equal(result.status, 1, result.stdout + result.stderr);
  assert.match(result.stderr, /^kernel console: No kernel is running in .*\[E_KERNEL_NOT_RUNNING\]\n$/);
  assert.equal(result.stdout, '');
});

/**
 * The line with the last prompt, from where the prompt starts (the eager-evaluation preview may
 * print a line below it; a colour capture may start the line with escape codes).
 */
function lastPromptLine(screen: string): string {
  const line = screen.split('\n').findLast((candidate) => candidate.includes(PROMPT.trimEnd())) ?? '';
  return line.slice(line.indexOf(PROMPT.trimEnd())).trimEnd();
}
