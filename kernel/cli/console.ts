// `kernel console`: a REPL attached to a running kernel, the way an operator keeps an iex shell
// attached to a running Erlang node. Runs in the CLI's own process; every call travels over the
// deploy root's control socket with the cookie, so the kernel needs nothing console-specific
// beyond the `describe`, `call` and `logs` operations.
//
// What it offers:
//   - every running service in scope as a client (`await sequence.nextNumber()`), and all of them
//     under `services`, built from `describe` and refreshed when a release changes;
//   - tab completion of service names and their call and cast names;
//   - a history file, <root>/var/console_history (mode 0600);
//   - commands, listed by .help: .status, .releases, .services, .upgrade, .downgrade, .commit;
//   - the services' log lines (info and above) printed above the prompt as they happen, from a
//     second connection streaming `logs`;
//   - errors from calls as one line with their code; the REPL carries on;
//   - Ctrl-D, or Ctrl-C on an empty line, leaves; the kernel keeps running.

import { existsSync } from 'node:fs';
import { chmod, open } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { clearScreenDown, createInterface, cursorTo, moveCursor, type AsyncCompleter, type CompleterResult } from 'node:readline';
import repl, { type REPLServer } from 'node:repl';
import { PassThrough } from 'node:stream';
import { inspect, type InspectOptions } from 'node:util';
import type { ControlReplies, PhaseEvent, ServiceDescription, StatusResult } from '../common/control-protocol.ts';
import { TheseusError, errorMessage, theseusError } from '../common/errors.ts';
import type { LogRecord } from '../common/protocol.ts';
import { varPaths } from '../common/deploy-paths.ts';
import { request } from './control-client.ts';
import { LogStream } from './console-log-stream.ts';
import { serviceHelp } from './console-help.ts';
import { consoleError, describeFailure, notJson } from './console-values.ts';
import { ANSI, LEVEL_COLORS, describeSwapFailure, formatPhase, formatReleases, formatServiceSwap, formatStatus } from './format.ts';

/** The prompt. It leaves out the release, which can change while attached; the banner and .status name it. */
const PROMPT = 'theseus> ';
/** How long a call may take before the console gives up on it (Ctrl-C gives up sooner). */
const CALL_TIMEOUT_MS = 5 * 60_000;
/** Upgrades and downgrades, as the CLI's own `kernel upgrade`. */
const SWAP_TIMEOUT_MS = 10 * 60_000;

export interface ConsoleOptions {
  /** Default: process.stdin and process.stdout. A TTY output gets the line editor, completion and colours. */
  input?: NodeJS.ReadableStream;
  output?: NodeJS.WritableStream & { isTTY?: boolean };
}

/**
 * Attaches a REPL to the kernel running in `root` and resolves with the exit code once the user
 * leaves. Throws the TheseusError of the first request (E_KERNEL_NOT_RUNNING, E_BAD_COOKIE...)
 * when it cannot attach, for the CLI to print as one line.
 */
export async function runConsole(root: string, options: ConsoleOptions = {}): Promise<number> {
  const session = new ConsoleSession(root, options.input ?? process.stdin, options.output ?? process.stdout);
  return session.run();
}

// ---------------------------------------------------------------------------------------------
// The session

type Methods = Record<string, (...args: unknown[]) => unknown>;

/** A service in scope: its methods as real properties, behind a proxy that forwards any other name. */
interface Client {
  methods: Methods;
  proxy: Methods;
}

class ConsoleSession {
  readonly #root: string;
  readonly #input: NodeJS.ReadableStream;
  readonly #output: NodeJS.WritableStream & { isTTY?: boolean };
  readonly #terminal: boolean;
  readonly #colors: boolean;
  #server: REPLServer | null = null;
  #logs: LogStream | null = null;

  /** The services as `describe` last answered, by name. */
  #services = new Map<string, ServiceDescription>();
  /** One client object per service; kept across refreshes so references the user holds stay live. */
  #clients = new Map<string, Client>();
  /** `services.<name>` for every service, including names that are not identifiers. */
  #servicesObject: Record<string, Methods> = {};
  /** What this session put in the REPL's scope, by name (so a refresh can tell its own from the user's). */
  #scoped = new Map<string, unknown>();
  #refreshTimer: NodeJS.Timeout | null = null;

  /** Whether the prompt is on screen, waiting for input (not evaluating, not running a command). */
  #atPrompt = false;
  /** Console commands (.upgrade...) running. */
  #commandsRunning = 0;
  /** Requests sent and not answered yet: a call being awaited, an upgrade... */
  #pending = 0;
  /** Waiting for #pending to reach zero. */
  #whenIdle: Array<() => void> = [];
  /** Casts are fire-and-forget; the next request waits until they reached the kernel, to keep their order. */
  #castsSent: Promise<unknown> = Promise.resolve();
  #closed = false;
  /** Piped lines waiting for the prompt (see #replInput). */
  #promptWaiters: Array<() => void> = [];
  /** Log lines held while an upgrade prints its table of phases; null when none runs. */
  #heldLogLines: string[] | null = null;

  constructor(root: string, input: NodeJS.ReadableStream, output: NodeJS.WritableStream & { isTTY?: boolean }) {
    this.#root = root;
    this.#input = input;
    this.#output = output;
    this.#terminal = Boolean(output.isTTY);
    const { hasColors } = output as { hasColors?: () => boolean };
    this.#colors = this.#terminal && typeof hasColors === 'function' && hasColors.call(output);
  }

  async run(): Promise<number> {
    // Attach first: with no kernel, this throws before anything is printed.
    const [status, services] = await Promise.all([request(this.#root, 'status', {}), this.#describe()]);
    this.#applyDescriptions(services);

    // The log stream, on its own connection; opened before the prompt so no line is missed.
    this.#logs = new LogStream(this.#root, {
      onRecord: (record) => this.#onLog(record),
      onDetached: () => this.#printAbove(this.#style('yellow', '[console] lost the connection to the kernel; reattaching...')),
      onRefused: (error) => this.#printAbove(this.#style('yellow', `[console] the kernel refused the log stream, so its log lines are not shown here: ${describeFailure(error)}`)),
      onReattached: () => {
        this.#printAbove(this.#style('yellow', '[console] reattached to the kernel'));
        this.#scheduleRefresh();
      },
    });
    await this.#logs.open();

    this.#write(this.#banner(status));
    const server = this.#startRepl();
    // Listen at once: piped input can end before the history is set up.
    const left = new Promise<number>((resolveExit) => server.once('exit', () => resolveExit(this.#close())));
    await this.#setupHistory(server);
    return left;
  }

  // -------------------------------------------------------------------------------------------
  // The REPL

  /**
   * The REPL's input: the terminal itself, or piped lines fed one at a time. Node's REPL reads
   * piped lines as fast as they come and evaluates the next one while an awaited call still
   * runs, so results came out of order and some never printed. A script's lines run one after
   * the other: each is fed once the REPL shows its prompt again (the line before has finished).
   */
  #replInput(): NodeJS.ReadableStream {
    if (this.#terminal) return this.#input;
    const feed = new PassThrough();
    const lines = createInterface({ input: this.#input, crlfDelay: Infinity });
    const untilPrompt = () => (this.#atPrompt ? Promise.resolve() : new Promise<void>((shown) => this.#promptWaiters.push(shown)));
    void (async () => {
      try {
        for await (const line of lines) {
          await untilPrompt();
          // Taken now, not when the REPL's 'line' event comes: the next line must wait for it.
          this.#atPrompt = false;
          feed.write(`${line}\n`);
        }
        await untilPrompt();
      } finally {
        feed.end();
      }
    })();
    return feed;
  }

  #startRepl(): REPLServer {
    const writerOptions: InspectOptions = { ...inspect.defaultOptions, colors: this.#colors };
    // The REPL's writer: Node's default one, except that proxies (the clients) print as the object
    // they stand for, without going through them. The REPL reads `writer.options` for its previews.
    const writer = Object.assign((value: unknown) => inspect(value, writerOptions), { options: writerOptions });
    // When an evaluation rejects, the REPL prints "Uncaught <error>", and puts the error on a line
    // of its own if it is longer than the default writer's breakLength. Errors from calls are one
    // line (see consoleError) and should stay one line whatever their length. The default writer is
    // not used otherwise: this session passes its own.
    (repl.writer as unknown as { options: InspectOptions }).options.breakLength = Infinity;

    const server = repl.start({
      prompt: PROMPT,
      input: this.#replInput(),
      output: this.#output,
      terminal: this.#terminal,
      useColors: this.#colors,
      useGlobal: false,
      // Casts answer nothing: print nothing rather than `undefined`.
      ignoreUndefined: true,
      // Ctrl-C while a call is awaited abandons the wait (the call itself still runs in the kernel).
      breakEvalOnSigint: true,
      writer,
    });
    this.#server = server;

    // Know whether the prompt is on screen: a submitted line takes it away, and the REPL shows it
    // again through displayPrompt() once the evaluation, the error or the command is done.
    server.prependListener('line', () => {
      this.#atPrompt = false;
    });
    const displayPrompt = server.displayPrompt.bind(server);
    server.displayPrompt = (preserveCursor?: boolean) => {
      this.#atPrompt = true;
      displayPrompt(preserveCursor);
      for (const waiter of this.#promptWaiters.splice(0)) waiter();
    };
    this.#atPrompt = true;

    this.#populateScope();
    // `.clear` gives the REPL a fresh context: put the services back in it.
    server.on('reset', () => this.#populateScope());

    this.#installCompleter(server);
    this.#installSigint(server);
    this.#defineCommands(server);
    return server;
  }

  /** Loads and then keeps <root>/var/console_history, created owner-only. */
  async #setupHistory(server: REPLServer): Promise<void> {
    const file = join(varPaths(this.#root).dir, 'console_history');
    try {
      const handle = await open(file, 'a', 0o600);
      await handle.close();
      await chmod(file, 0o600);
    } catch (error) {
      this.#printAbove(this.#style('yellow', `[console] no history: cannot write ${file} (${errorMessage(error)})`));
      return;
    }
    await new Promise<void>((done) =>
      server.setupHistory(file, (error) => {
        if (error) this.#printAbove(this.#style('yellow', `[console] no history: ${errorMessage(error)}`));
        done();
      }),
    );
  }

  /**
   * Ctrl-C leaves at once on an empty prompt (Node's REPL wants it twice). Elsewhere it does what
   * the REPL does: clears the line being typed, ends a multi-line entry or the editor mode, or
   * interrupts an evaluation that is waiting on a call.
   */
  #installSigint(server: REPLServer): void {
    const builtin = server.listeners('SIGINT') as Array<(...args: unknown[]) => void>;
    server.removeAllListeners('SIGINT');
    server.on('SIGINT', () => {
      const idle = this.#atPrompt && server.line.length === 0 && server.getPrompt() === PROMPT;
      if (this.#commandsRunning > 0 || idle) {
        // An upgrade the console started carries on in the kernel; the console just stops watching.
        this.#write('\n');
        server.close();
        return;
      }
      for (const listener of builtin) listener.call(server);
    });
  }

  #defineCommands(server: REPLServer): void {
    // `.help` alone is the REPL's own list of commands; `.help <service>` is the service's methods.
    const listCommands = server.commands.help!.action;
    server.defineCommand('help', {
      help: "Print this help, or a service's calls and casts with their arguments: .help <service>",
      action: (rest) => (rest.trim() === '' ? listCommands.call(server, rest) : this.#command(() => this.#showServiceHelp(rest.trim()))),
    });
    server.defineCommand('status', {
      help: 'Show the release and every service (as kernel status)',
      action: () => this.#command(() => this.#showStatus()),
    });
    server.defineCommand('releases', {
      help: 'List the installed releases (as kernel releases)',
      action: () => this.#command(() => this.#showReleases()),
    });
    server.defineCommand('services', {
      help: 'List the services in scope with their calls and casts',
      action: () => this.#command(() => this.#showServices()),
    });
    server.defineCommand('upgrade', {
      help: 'Hot-upgrade to a release: .upgrade <folder|tarball|version> [--no-commit]',
      action: (rest) => this.#command(() => this.#swap('upgrade', rest)),
    });
    server.defineCommand('downgrade', {
      help: 'Hot-downgrade to an installed release: .downgrade <version> [--no-commit]',
      action: (rest) => this.#command(() => this.#swap('downgrade', rest)),
    });
    server.defineCommand('commit', {
      help: 'Make the release on trial permanent (as kernel commit)',
      action: () =>
        this.#command(async () => {
          const { permanent } = await this.#counted(request(this.#root, 'commit', {}));
          this.#write(`Made release permanent: ${permanent}\n`);
        }),
    });
  }

  /** Runs a command's work, prints its failure as one line, then gives the prompt back. */
  #command(work: () => Promise<void>): void {
    this.#commandsRunning++;
    work()
      .catch((error: unknown) => this.#write(`${this.#style('red', describeFailure(error))}\n`))
      .finally(() => {
        this.#commandsRunning--;
        if (!this.#closed && this.#commandsRunning === 0) this.#server?.displayPrompt();
      });
  }

  /** The user left (Ctrl-D, Ctrl-C, .exit) or the input ended. */
  async #close(): Promise<number> {
    this.#closed = true;
    if (this.#refreshTimer) clearTimeout(this.#refreshTimer);
    if (!this.#terminal) {
      // Piped input ended: let what it asked for finish and print, as a script would.
      await this.#settled();
      this.#write('\n');
    }
    this.#logs?.close();
    this.#write('Left the console; the kernel keeps running.\n');
    if (this.#pending > 0) {
      // A call or an upgrade is still being waited on (interrupted with Ctrl-C, or left while an
      // upgrade ran). The kernel carries on with it; the console does not wait for its answer, and
      // request() cannot be cancelled, so end the process rather than linger until it times out.
      setImmediate(() => process.exit(0));
    }
    return 0;
  }

  /** Resolves once no request is waited on, and the REPL had a turn to print their results. */
  async #settled(): Promise<void> {
    while (this.#pending > 0) await new Promise<void>((resolved) => this.#whenIdle.push(resolved));
    await new Promise((resolved) => setImmediate(resolved));
  }

  // -------------------------------------------------------------------------------------------
  // Services in scope

  async #describe(): Promise<ServiceDescription[]> {
    return request(this.#root, 'describe', {}, { timeoutMs: 10_000 });
  }

  /** Brings the clients in line with `describe`: new services and methods appear, gone ones go. */
  #applyDescriptions(descriptions: ServiceDescription[]): void {
    const names = new Set(descriptions.map((d) => d.name));
    for (const name of [...this.#services.keys()]) {
      if (names.has(name)) continue;
      this.#services.delete(name);
      this.#clients.delete(name);
      delete this.#servicesObject[name];
    }
    for (const description of descriptions) {
      this.#services.set(description.name, description);
      let client = this.#clients.get(description.name);
      if (!client) {
        client = this.#newClient(description.name);
        this.#clients.set(description.name, client);
        this.#servicesObject[description.name] = client.proxy;
      }
      const { methods } = client;
      const known = new Set([...description.calls, ...description.casts]);
      for (const method of Object.keys(methods)) if (!known.has(method)) delete methods[method];
      // Real own properties, so Node's own completion and inspection see them too.
      for (const method of description.calls) methods[method] = this.#callFunction(description.name, method);
      for (const method of description.casts) methods[method] = this.#castFunction(description.name, method);
    }
    if (this.#server) this.#populateScope();
  }

  /**
   * The client of a service. A name `describe` did not list is still sent to the kernel as a
   * call, so a typo gets the kernel's own answer (E_UNKNOWN_METHOD, with the names it has) rather
   * than "is not a function", and a method added by an upgrade the console has not seen yet works.
   * Names every object has (toString...), symbols and `then` (so `await sequence` stays harmless)
   * are left alone.
   */
  #newClient(service: string): Client {
    const methods: Methods = {};
    const proxy = new Proxy(methods, {
      get: (target, key, receiver) => {
        if (typeof key === 'symbol' || Object.hasOwn(target, key) || key in Object.prototype || NOT_FORWARDED.has(key)) return Reflect.get(target, key, receiver);
        return this.#callFunction(service, key);
      },
    });
    return { methods, proxy };
  }

  /** Puts `services` and every service whose name can be a variable into the REPL's context. */
  #populateScope(): void {
    const context = this.#server!.context as Record<string, unknown>;
    // A service that went away leaves the scope, unless the user has put something else there.
    for (const [name, value] of this.#scoped) {
      if (!this.#clients.has(name) && name !== 'services' && context[name] === value) delete context[name];
    }
    this.#scoped.clear();
    context.services = this.#servicesObject;
    this.#scoped.set('services', this.#servicesObject);
    for (const [name, client] of this.#clients) {
      if (!this.#canBeVariable(name, context)) continue;
      context[name] = client.proxy;
      this.#scoped.set(name, client.proxy);
    }
  }

  /** A service gets a variable of its own unless its name is not an identifier or is taken by a global. */
  #canBeVariable(name: string, context: object = globalThis): boolean {
    if (!/^[A-Za-z_$][\w$]*$/.test(name) || RESERVED_WORDS.has(name) || name === 'services') return false;
    return !(name in context) || this.#clients.get(name)?.proxy === (context as Record<string, unknown>)[name];
  }

  #callFunction(service: string, method: string): (...args: unknown[]) => Promise<unknown> {
    const call = async (...args: unknown[]): Promise<unknown> => {
      const result = await this.#remote(service, method, args).catch((error: unknown) => {
        throw consoleError(error);
      });
      return 'reply' in result ? result.reply : undefined;
    };
    return Object.defineProperty(call, 'name', { value: method });
  }

  #castFunction(service: string, method: string): (...args: unknown[]) => void {
    const cast = (...args: unknown[]): void => {
      const sent = this.#remote(service, method, args);
      this.#castsSent = sent.catch(() => undefined);
      // Nothing waits on a cast, so its failure (no such service, kernel gone) is printed here.
      sent.catch((error: unknown) => this.#printAbove(this.#style('red', consoleError(error).stack!)));
    };
    return Object.defineProperty(cast, 'name', { value: method });
  }

  /** One `call` request, sent after the casts issued before it. */
  async #remote(service: string, method: string, args: unknown[]): Promise<ControlReplies['call']> {
    // Arguments travel as JSON: refuse what JSON would silently change or cannot hold.
    for (const arg of args) {
      const reason = notJson(arg);
      if (reason) {
        throw theseusError('E_CONSOLE_ARGS_NOT_JSON', service, method, reason);
      }
    }
    await this.#castsSent;
    return this.#counted(request(this.#root, 'call', { service, method, args }, { timeoutMs: CALL_TIMEOUT_MS }));
  }

  /** Re-reads the services shortly after a release may have changed (several log lines, one request). */
  #scheduleRefresh(): void {
    if (this.#refreshTimer || this.#closed) return;
    this.#refreshTimer = setTimeout(() => {
      this.#refreshTimer = null;
      this.#describe().then(
        (descriptions) => this.#applyDescriptions(descriptions),
        () => undefined, // The kernel is away; the log stream says so, and the scope stays as it was.
      );
    }, 50);
  }

  // -------------------------------------------------------------------------------------------
  // Completion

  /**
   * Completes `name.` with the service's calls and casts, `services.` with the service names, and
   * a bare word with the service names as well as whatever Node's REPL completes (globals,
   * variables, `.commands`), which handles everything else.
   */
  #installCompleter(server: REPLServer): void {
    const builtin = server.completer as AsyncCompleter;
    const complete = (line: string, callback: (error?: Error | null, result?: CompleterResult) => void): void => {
      const member = /(?<![\w$.\]])(services\.)?([A-Za-z_$][\w$]*)\.([\w$]*)$/.exec(line);
      if (member) {
        const [, viaServices, object, prefix] = member as unknown as [string, string | undefined, string, string];
        const expression = `${viaServices ?? ''}${object}`;
        let candidates: string[] = [];
        if (!viaServices && object === 'services') {
          candidates = [...this.#services.keys()].filter((name) => /^[A-Za-z_$][\w$]*$/.test(name));
        } else if (viaServices ? this.#services.has(object) : this.#scoped.has(object) && object !== 'services') {
          const { calls, casts } = this.#services.get(object)!;
          candidates = [...calls, ...casts];
        }
        const matches = candidates.filter((name) => name.startsWith(prefix)).sort();
        if (matches.length > 0) {
          callback(null, [matches.map((name) => `${expression}.${name}`), `${expression}.${prefix}`]);
          return;
        }
        builtin(line, callback);
        return;
      }
      const word = /(?<![\w$.\]])[A-Za-z_$][\w$]*$/.exec(line)?.[0];
      const ours = word ? [...this.#scoped.keys()].filter((name) => name.startsWith(word)).sort() : [];
      if (ours.length === 0) {
        builtin(line, callback);
        return;
      }
      builtin(line, (error, result) => {
        const theirs = error || !result || result[1] !== word ? [] : result[0].filter((name) => !ours.includes(name));
        callback(null, [theirs.some(Boolean) ? [...ours, '', ...theirs] : ours, word!]);
      });
    };
    // Node's REPL takes its completer at construction, where its default one is still needed as
    // the fallback above; readline reads `completer` at each Tab, so replacing it here works.
    (server as unknown as { completer: AsyncCompleter }).completer = complete;
  }

  // -------------------------------------------------------------------------------------------
  // Commands

  async #showStatus(): Promise<void> {
    const status = await this.#counted(request(this.#root, 'status', {}));
    this.#write(`${formatStatus(status).join('\n')}\n`);
  }

  async #showReleases(): Promise<void> {
    const releases = await this.#counted(request(this.#root, 'releases', {}));
    if (releases.length === 0) {
      this.#write('No releases installed.\n');
      return;
    }
    this.#write(`${formatReleases(releases)}\n`);
  }

  async #showServices(): Promise<void> {
    this.#applyDescriptions(await this.#describe());
    this.#write(`${this.#serviceLines().join('\n')}\n`);
  }

  /** `.help <service>`: its calls and casts with their arguments, as `describe` answers now. */
  async #showServiceHelp(name: string): Promise<void> {
    this.#applyDescriptions(await this.#counted(this.#describe()));
    const description = this.#services.get(name);
    if (!description) {
      this.#write(`No service named '${name}' is running (running: ${[...this.#services.keys()].join(', ') || 'none'}). .services lists them.\n`);
      return;
    }
    const variable = this.#isVariable(name) ? name : `services[${JSON.stringify(name)}]`;
    this.#write(`${serviceHelp(description, variable).join('\n')}\n`);
  }

  /** .upgrade and .downgrade: the steps as they happen, then each service's pause, as `kernel upgrade` prints them. */
  async #swap(verb: 'upgrade' | 'downgrade', rest: string): Promise<void> {
    const words = rest.trim().split(/\s+/).filter(Boolean);
    const commit = !words.includes('--no-commit');
    let target = words.filter((word) => word !== '--no-commit').join(' ');
    if (!target) {
      this.#write(verb === 'upgrade' ? 'Usage: .upgrade <folder|tarball|version> [--no-commit]\n' : 'Usage: .downgrade <version> [--no-commit]\n');
      return;
    }
    // A path is resolved here: the kernel's working folder is not the console's.
    if (verb === 'upgrade' && existsSync(target)) target = resolve(target);
    this.#write(`${verb === 'upgrade' ? 'Upgrading' : 'Downgrading'} to ${target}\n`);
    const onEvent = (event: PhaseEvent) => this.#write(`${formatPhase(event)}\n`);
    // The swap's log lines (a migration's, say) wait until its table is printed, not to split it.
    this.#heldLogLines = [];
    try {
      const result = await (verb === 'upgrade'
        ? this.#counted(request(this.#root, 'upgrade', { source: target, commit }, { timeoutMs: SWAP_TIMEOUT_MS, onEvent }))
        : this.#counted(request(this.#root, 'downgrade', { version: target, commit }, { timeoutMs: SWAP_TIMEOUT_MS, onEvent })));
      for (const service of result.report.services) {
        this.#write(`  ${formatServiceSwap(service)}\n`);
      }
      this.#write(result.committed ? `Release ${result.to} is running and permanent.\n` : `Release ${result.to} is running on trial: .commit makes it permanent; a restart goes back to the permanent release.\n`);
    } catch (error) {
      // A failed swap says what became of it and in which phase, as `kernel upgrade` does.
      if (!(error instanceof TheseusError)) throw error;
      const { verdict, phase, reason } = describeSwapFailure(error);
      this.#write(`${this.#style('red', `${verb === 'upgrade' ? 'Upgrade' : 'Downgrade'} ${verdict}${phase ? ` in phase '${phase}'` : ''}: ${reason} [${error.code}]`)}\n`);
    } finally {
      const held = this.#heldLogLines;
      this.#heldLogLines = null;
      for (const line of held) this.#write(`${line}\n`);
      // The services' methods may have changed, whichever way it went.
      this.#scheduleRefresh();
    }
  }

  // -------------------------------------------------------------------------------------------
  // Output

  #banner(status: StatusResult): string {
    const example = [...this.#services.values()].find((s) => this.#isVariable(s.name) && s.calls.length > 0);
    return [
      `Theseus console: ${status.app} ${status.release}, kernel pid ${status.pid}, root ${this.#root}`,
      ...this.#serviceLines(),
      `${example ? `Try: await ${example.name}.${example.calls[0]}()   ` : ''}.help lists the commands   Ctrl-D or Ctrl-C leaves (the kernel keeps running)`,
      '',
    ].join('\n');
  }

  /** Whether the service is (or, before the REPL starts, will be) a variable of its own. */
  #isVariable(name: string): boolean {
    return this.#server ? this.#scoped.has(name) : this.#canBeVariable(name);
  }

  #serviceLines(): string[] {
    if (this.#services.size === 0) return ['No services are running.'];
    return [...this.#services.values()].map((s) => {
      const name = this.#isVariable(s.name) ? s.name : `services[${JSON.stringify(s.name)}]`;
      return `  ${name}  ${s.release} (vsn ${s.vsn})  calls: ${s.calls.join(', ') || 'none'}  casts: ${s.casts.join(', ') || 'none'}`;
    });
  }

  #onLog(record: LogRecord): void {
    // A line from the kernel itself (a swap committed...) or from a service on a release the scope
    // does not know yet means the methods may have changed.
    if (record.service === 'kernel' || (this.#services.has(record.service) && this.#services.get(record.service)!.release !== record.release)) this.#scheduleRefresh();
    if (record.level === 'debug') return;
    const data = record.data === undefined ? '' : ` ${JSON.stringify(record.data)}`;
    const level = this.#style(LEVEL_COLORS[record.level], `${record.level}:`);
    const line = `${this.#style('dim', `[${record.service}@${record.release}]`)} ${level} ${record.message}${data}`;
    if (this.#heldLogLines) this.#heldLogLines.push(line);
    else this.#printAbove(line);
  }

  /**
   * Prints a line that did not come from the user's input (a log line, a cast's failure) without
   * breaking the prompt: the prompt and the line being typed are cleared, the text is printed
   * where they were, and they are drawn again below it with the cursor where it was.
   */
  #printAbove(text: string): void {
    const server = this.#server;
    // While a line is evaluated or a command runs, there is no prompt to keep: just print.
    if (this.#closed || !server || !this.#terminal || !(this.#atPrompt || server.editorMode)) {
      this.#write(`${text}\n`);
      return;
    }
    // Up to the row the prompt starts on (the line being typed may wrap), and clear from there.
    moveCursor(this.#output, 0, -server.getCursorPos().rows);
    cursorTo(this.#output, 0);
    clearScreenDown(this.#output);
    this.#write(`${text}\n`);
    // The cursor is now where the prompt starts. readline climbs `prevRows` rows before it redraws
    // (the row its cursor was on at its last redraw, which can be out of date); zero it, as its own
    // clearLine() does after starting a fresh line. Then the prompt as it is (the usual one,
    // '... ' in a multi-line entry, none in the editor mode), the line, and the cursor where it was.
    (server as unknown as { prevRows: number }).prevRows = 0;
    server.prompt(true);
  }

  #write(text: string): void {
    this.#output.write(text);
  }

  #style(style: keyof typeof ANSI, text: string): string {
    return this.#colors ? `${ANSI[style][0]}${text}${ANSI[style][1]}` : text;
  }

  /** Counts a request while it is waited on, so that leaving can tell whether anything still is. */
  async #counted<T>(pending: Promise<T>): Promise<T> {
    this.#pending++;
    try {
      return await pending;
    } finally {
      this.#pending--;
      if (this.#pending === 0) for (const resolved of this.#whenIdle.splice(0)) resolved();
    }
  }
}

/** Property names a client never forwards to the kernel: what promises, JSON and inspection look for. */
const NOT_FORWARDED = new Set(['then', 'catch', 'finally', 'toJSON', 'inspect', 'asymmetricMatch', 'nodeType', 'prototype']);

/** Names a service cannot take as a variable; it stays reachable as services['name']. */
const RESERVED_WORDS = new Set(
  (
    'await break case catch class const continue debugger default delete do else enum export extends false finally for function if ' +
    'implements import in instanceof interface let new null package private protected public return static super switch this throw ' +
    'true try typeof var void while with yield arguments eval undefined NaN Infinity'
  ).split(' '),
);

