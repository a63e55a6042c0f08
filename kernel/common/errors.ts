// The one registry of Theseus's coded errors. Each message says what went wrong and what to do
// about it. Tests assert on `code`, never on the wording, so messages may be improved freely.
//
// Runs in both the kernel's main thread and service workers; errors cross threads as
// `SerializedError` (structured clone keeps neither the class nor custom fields reliably).

import type { UpgradePhase } from './phases.ts';

const messages = {
  E_UNKNOWN_SERVICE: (name: string, known: string) =>
    `No service named '${name}' is running (running: ${known || 'none'}). Check the name, or add the service to the release.`,
  E_UNKNOWN_METHOD: (service: string, method: string, known: string) =>
    `Service '${service}' has no call or cast named '${method}' (it has: ${known || 'none'}). Check the name, or upgrade to a release that defines it.`,
  E_ARGS_NOT_CLONEABLE: (service: string, method: string, reason: string) =>
    `Arguments to ${service}.${method}() cannot be sent to another thread: ${reason}. Pass plain data (objects, arrays, numbers, strings, Map, Set, Date, typed arrays).`,
  E_CONSOLE_ARGS_NOT_JSON: (service: string, method: string, reason: string) =>
    `Arguments to ${service}.${method}() cannot be sent from the console: it sends them as JSON, and ${reason}. Pass objects, arrays, strings, finite numbers, booleans and null.`,
  E_REPLY_NOT_CLONEABLE: (service: string, method: string, reason: string) =>
    `The reply of ${service}.${method}() cannot be sent back to the caller: ${reason}. Return plain data from the handler; the state was left as it was before the call.`,
  E_STATE_NOT_CLONEABLE: (service: string, where: string, reason: string) =>
    `The state of '${service}' (${where}) is not plain cloneable data: ${reason}. Keep only plain data in state; rebuild functions and class instances from it in the handlers.`,
  E_STATE_NOT_DURABLE: (service: string, reason: string) =>
    `The state of '${service}' could not be written to disk (${reason}), so this call was undone: the service went back to the last state written, and no caller was told of a change that a crash could lose. Free the disk or fix the state folder; the service keeps serving.`,
  E_HANDLER_FAILED: (service: string, method: string, message: string) =>
    `${service}.${method}() threw: ${message}`,
  E_BAD_HANDLER_RESULT: (service: string, method: string, got: string) =>
    `${service}.${method}() returned ${got}; a call handler must return { reply, state? } and a cast handler { state? } or nothing.`,
  E_INVALID_SERVICE: (entry: string, reason: string) =>
    `The module ${entry} is not a valid service: ${reason}. Export the result of defineService({ vsn, init, calls, casts, migrations }) as its default export.`,
  E_SERVICE_DOWN: (service: string, reason: string) =>
    `Service '${service}' is not running (${reason}); the call was not served. Check the kernel's log for why the service stopped.`,
  E_SERVICE_REMOVED: (service: string, reason: string) =>
    `Service '${service}' was removed (${reason}); the call was not served. Call a service the running release has, or downgrade to a release that has '${service}': it resumes from its kept state.`,
  E_REMOVED_STILL_USED: (release: string, removed: string, users: string) =>
    `Release ${release} removes '${removed}', but ${users} still uses it. Remove '${removed}' from their uses in the same release, or keep '${removed}' in it.`,
  E_BOOT_FAILED: (service: string, release: string, reason: string) =>
    `The new worker for ${service}@${release} failed to boot: ${reason}. Fix the service's module or its init; the running release was not touched.`,
  E_INIT_TIMEOUT: (service: string, release: string, ms: number) =>
    `${service}@${release} did not finish init within ${ms} ms. Make init return sooner or raise initTimeoutMs.`,
  E_DRAIN_TIMEOUT: (service: string, ms: number, running: number, outgoing: number, unwritten: number, queued: number) =>
    `${service} did not finish its running handler within the drain timeout of ${ms} ms (${running} handler running, ${outgoing} of its outgoing calls unanswered, ${unwritten} replies waiting for their state to be written; ${queued} queued messages were not waited for). The old workers were resumed; raise drainTimeoutMs or make each handler finish sooner.`,
  E_NO_MIGRATION_PATH: (service: string, from: string, to: string, direction: string, where: string) =>
    `${service} has no ${direction} migration path from state vsn '${from}' to '${to}' in ${where}. Add a migration { from, to, up, down } to the service so the chain covers it.`,
  E_MIGRATION_FAILED: (service: string, step: string, message: string) =>
    `Migration ${step} of ${service} threw: ${message}. The old workers were resumed with their state untouched; fix the migration and try again.`,
  E_MIGRATION_BAD_STATE: (service: string, step: string, reason: string) =>
    `Migration ${step} of ${service} returned state that cannot be moved between threads: ${reason}. Return plain data from migrations.`,
  E_DESCRIPTOR_MISMATCH: (service: string, release: string, loaded: string, expected: string) =>
    `${service}@${release} declares ${loaded} but its manifest says ${expected}. Rebuild the release so the manifest matches its bundle.`,
  E_HANDOFF_CLOSED: (service: string, release: string) =>
    `The channel from the old worker of ${service} closed before its state reached ${service}@${release}: the old worker ended or gave up its suspend. The swap rolls back and the old worker keeps serving; the kernel log says why it stopped. Retry the upgrade once that is fixed.`,
  E_STORE_BAD_KEY: (service: string, got: string) =>
    `A key of ${service}'s store was ${got}; keys are strings or finite numbers. Turn the key into a string (e.g. String(id)) before store.set().`,
  E_NOT_KEYED: (service: string) =>
    `${service} used ctx.store, but its definition does not say keyed: true. Add keyed: true to defineService, or keep the data in state.`,
  E_KEYED_CHANGED: (service: string, from: string, to: string) =>
    `${service} is ${from} in the running release and ${to} in the new one; a swap cannot turn keyed state on or off. Keep keyed as it is in this release; to move data between state and store, ship a release with both and copy it in a call.`,
  E_ENTRY_MIGRATION_FAILED: (service: string, step: string, key: string, message: string) =>
    `The entry migration ${step} of ${service} failed on key ${key}: ${message}. The old workers kept serving with their store untouched; fix upEntry/downEntry (synchronous, returning plain data) and try again.`,
  E_PRECOPY_ABORTED: (service: string) =>
    `The copy of ${service}'s store to its new worker stopped: the new worker's end of the channel closed (it failed or was ended). The old worker keeps serving with its store untouched; the swap reports why the new worker stopped. Fix that and retry the upgrade.`,
  E_WORKER_EXITED: (service: string, release: string, phase: string, reason: string) =>
    `The worker for ${service}@${release} exited during ${phase}: ${reason}.`,
  E_SWAP_IN_PROGRESS: () =>
    `Another upgrade or downgrade is already running. Wait for it to finish, then try again.`,
  E_SWAP_NOTHING_TO_DO: (release: string) =>
    `Release ${release} changes no running service. Nothing was done.`,
  E_CONTROL_TIMEOUT: (service: string, op: string, ms: number) =>
    `${service} did not answer '${op}' within ${ms} ms. The worker may be blocked in a synchronous loop.`,
  E_KERNEL_STOPPED: () => `The kernel has been stopped. Start a new kernel to make calls.`,
  E_BUNDLE_FAILED: (entry: string, reason: string) =>
    `Bundling ${entry} with esbuild failed: ${reason}. Fix the compile error and try again.`,
  E_BAD_OPTIONS: (what: string, reason: string) => `Invalid ${what}: ${reason}.`,
  E_UNKNOWN_DEPENDENCY: (service: string, dependency: string) =>
    `${service} uses '${dependency}', which is not in the release. Add '${dependency}' to the release's services, or remove it from uses.`,
  E_NOT_IN_USES: (service: string, other: string) =>
    `Service '${service}' asked for a client of '${other}', which it does not list in uses. Add uses: ['${other}'] to its definition.`,
  E_SERVICE_NOT_RUNNING: (service: string, state: string) =>
    `Service '${service}' is ${state}, not running; only a running service can be swapped. Check 'kernel status' and the log for why.`,
  // Pooled services
  E_POOLED_STATE_RETURNED: (service: string, method: string) =>
    `${service}.${method}() returned a state, but ${service} is a pooled (stateless) service: its handlers run on any thread of the pool and keep nothing between calls. Return { reply } only, or remove pool from the service's entry in theseus.config.ts to make it stateful.`,
  E_POOLED_NO_CLIENT: (service: string, other: string) =>
    `${service} asked for a client of '${other}' on a pool thread that has no channel to the kernel (piscina started the thread after the pool was warmed, to replace one that died). Nothing was sent; the next swap of ${service} warms every thread again.`,
  E_POOLED_USES: (service: string, uses: string) =>
    `${service} is pooled and uses the pooled service(s) ${uses}; a pooled service can use stateful services only. Call the other pool from a stateful service, or remove its pool.`,
  E_POOLED_KEYED: (service: string) =>
    `${service} is pooled and says keyed: true; a pool's threads share no state, so there is no store to keep. Remove keyed, or run the service stateful (no pool).`,
  E_POOLED_KIND_CHANGE: (service: string, from: string, to: string) =>
    `${service} is ${from} in the running release and ${to} in the new one; a service cannot change between pooled and stateful during a hot swap. Stop the kernel and start it on the new release, or keep the kind.`,
  E_POOL_WARMUP_TIMEOUT: (service: string, release: string, ready: number, size: number, ms: number) =>
    `The pool for ${service}@${release} had ${ready} of ${size} threads ready after ${ms} ms. The running release was not touched; make the module load faster or raise bootTimeoutMs.`,
  E_BAD_PHASE: (what: string) => `${what}. This is a kernel bug; please report it with the kernel's log.`,

  // Releases: building, installing and the registry.
  E_CONFIG_MISSING: (file: string) => `No release configuration at ${file}. Run 'kernel init' to write one.`,
  E_CONFIG_EXISTS: (file: string) => `${file} already exists. Edit it, or run 'kernel init --force' to overwrite it.`,
  E_CONFIG_INVALID: (file: string, reason: string) => `The release configuration ${file} is invalid: ${reason}. Fix it (see the comments 'kernel init' wrote).`,
  E_VERSION_NOT_BUMPED: (version: string, previous: string, packageFile: string) =>
    `Version ${version} in ${packageFile} is not above the previous release ${previous}. Bump the version before building an upgrade.`,
  E_RELEASE_CONFLICT: (version: string, where: string) =>
    `Release ${version} already exists in ${where} with different contents. Bump the version, or remove the old ${version} first.`,
  E_RELEASE_NOT_FOUND: (what: string, known: string) =>
    `No release '${what}': no file or folder has that path, and no release here has that version (the releases here: ${known || 'none'}). Check what you typed; a release is a folder or tarball built by 'kernel release', or the version of one built or installed here.`,
  E_UPFROM_NOT_BUILT: (version: string, outDir: string, built: string) =>
    `--upfrom ${version}: no release ${version} is built in ${outDir} (built: ${built || 'none'}). Build ${version} first, or leave out --upfrom to plan from the newest earlier release.`,
  E_RELEASE_NOT_INSTALLED: (version: string, known: string, advice: string) =>
    `Release ${version} is not installed (installed: ${known || 'none'}). ${advice}`,
  E_NO_RELEASE_TO_START: (root: string, why: string, advice: string) => `There is no release to start in ${root}: ${why}. ${advice}`,
  E_EXAMPLE_HAS_CONFIGS: (dir: string, configs: string, verb: string) =>
    `${dir} keeps one release configuration per version (${configs}) and needs no theseus.config.ts of its own, so '${verb}' has nothing to do here: 'kernel start' builds its releases and starts the first; 'kernel release --config <one of them>' builds one.`,
  E_UPGRADE_IS_DOWNGRADE: (to: string, from: string, target: string) =>
    `${to} is older than the running ${from}; run 'kernel downgrade ${target}' to go back to it. Nothing was done.`,
  E_DOWNGRADE_IS_UPGRADE: (to: string, from: string, target: string) =>
    `${to} is newer than the running ${from}; run 'kernel upgrade ${target}' to go forward to it. Nothing was done.`,
  E_RELEASE_ALREADY_RUNNING: (version: string, trial: boolean) =>
    `${version} is already running${trial ? ", on trial ('kernel commit' makes it permanent)" : ''}. Nothing was done.`,
  E_MANIFEST_INVALID: (file: string, what: string, problems: string) => `${file} is not a valid ${what}: ${problems}. Rebuild the release with 'kernel release'.`,
  E_RELEASE_HASH_MISMATCH: (file: string, expected: string, actual: string) =>
    `${file} does not match the manifest (sha256 ${actual.slice(0, 12)}..., expected ${expected.slice(0, 12)}...): the release was changed after it was built. Rebuild it or fetch it again.`,
  E_RELEASE_MISSING_FILE: (file: string) => `${file} is listed in the manifest but missing from the release. Rebuild it or fetch it again.`,
  E_RELEASE_EXTRA_FILE: (file: string) => `${file} is in the release but not in its manifest. Remove it, or rebuild the release.`,
  E_RELEASE_INCOMPATIBLE: (version: string, reason: string) => `Release ${version} cannot run here: ${reason}.`,
  E_TAR_TRAVERSAL: (archive: string, entry: string) => `${archive}: entry '${entry}' climbs out of the release folder with '..'. The archive was refused; nothing was written.`,
  E_TAR_ABSOLUTE: (archive: string, entry: string) => `${archive}: entry '${entry}' has an absolute path. The archive was refused; nothing was written.`,
  E_TAR_SYMLINK: (archive: string, entry: string) => `${archive}: entry '${entry}' is a symbolic link, which releases may not contain. The archive was refused; nothing was written.`,
  E_TAR_HARDLINK: (archive: string, entry: string) => `${archive}: entry '${entry}' is a hard link, which releases may not contain. The archive was refused; nothing was written.`,
  E_TAR_DEVICE: (archive: string, entry: string, type: string) => `${archive}: entry '${entry}' is a ${type}, which releases may not contain. The archive was refused; nothing was written.`,
  E_TAR_TOO_LARGE: (archive: string, what: string, limit: number) =>
    `${archive}: ${what} is over the limit of ${limit} bytes (a corrupt archive or a decompression bomb). The archive was refused; nothing was written.`,
  E_TAR_CORRUPT: (archive: string, reason: string) => `${archive} is not a readable .tar.gz: ${reason}. Fetch it again.`,
  E_TAR_ENTRY_TYPE: (archive: string, entry: string, type: string) =>
    `${archive}: entry '${entry}' is ${type}, which releases may not contain (only plain files and folders, with PAX or GNU long-name headers). The archive was refused; nothing was written. Build the release with 'kernel release'.`,
  E_TAR_EXTENDED_HEADER: (archive: string, entry: string, reason: string) =>
    `${archive}: the extended header before entry '${entry}' ${reason}. The archive was refused; nothing was written. Build the release with 'kernel release'.`,
  E_TAR_BAD_PATH: (archive: string, entry: string, reason: string) =>
    `${archive}: entry ${JSON.stringify(entry)} ${reason}. The archive was refused; nothing was written. Build the release with 'kernel release'.`,
  E_TAR_AMBIGUOUS: (archive: string, reason: string) =>
    `${archive}: ${reason}, so two tar readers could disagree on what it holds. The archive was refused. Build the release with 'kernel release'.`,
  E_UNPACK_WORKER_FAILED: (archive: string, reason: string) =>
    `The worker thread that unpacks ${archive} failed: ${reason}. Nothing was installed. A deployed kernel needs lib/unpack-worker.mjs beside lib/kernel.mjs: unpack the release tarball again.`,
  E_RELEASE_NOT_A_RELEASE: (source: string, what: string) =>
    `${source} is not a release: ${what}. Give a release folder (with manifest.json), a .tar.gz or .tar built by 'kernel release', or an installed version.`,
  E_RELEASE_VERSION_MISMATCH: (source: string, named: string, holds: string) =>
    `${source} is named for release ${named} but holds release ${holds}. Nothing was installed: rename the file to match what it holds, or fetch the release you meant.`,
  E_RELEASE_PATH_ESCAPES: (dir: string, path: string, where: string) =>
    `${dir}: the manifest's path ${JSON.stringify(path)} leads outside the release folder (${where}). Nothing was installed; rebuild the release with 'kernel release'.`,
  E_REGISTRY_INVALID: (file: string, reason: string) => `The release registry ${file} is unreadable: ${reason}. Restore it from the audit log, or remove it to start over.`,
  // The kernel as a program: control socket, daemon, hooks.
  E_KERNEL_NOT_RUNNING: (root: string, why: string) => `No kernel is running in ${root} (${why}). Start one with 'kernel start'.`,
  E_KERNEL_NOT_ANSWERING: (root: string, pid: number, why: string) =>
    `A kernel process runs in ${root} (pid ${pid}) but does not answer (${why}): it is starting, or stuck. Try again in a moment; 'kernel logs' says what it is doing.`,
  E_USAGE: (problem: string, help: string) => `${problem}${/[.?!]$/.test(problem) ? '' : '.'} '${help}' shows the usage.`,
  E_VERB_NOT_IN_DEPLOY_ROOT: (verb: string, does: string, root: string) =>
    `${verb} ${does}, and ${root} is a deploy root: it runs releases and has no project to build from. Run it in your project's folder (npx kernel ${verb}; node kernel ${verb} in the Theseus repo), then bring the release here with 'kernel upgrade <its tarball>'.`,
  E_KERNEL_START_FAILED: (exitCode: number, log: string, tail: string) =>
    `The kernel exited while starting (exit code ${exitCode}). Its last output (${log}):\n  ${tail}\nFix what it says, then run 'kernel start' again.`,
  E_ALREADY_RUNNING: (root: string, pid: number) => `A kernel is already running in ${root} (pid ${pid}). Stop it with 'kernel stop' first.`,
  E_BAD_COOKIE: () => `The request's cookie does not match this kernel's var/cookie. Run the CLI as the user who owns the deploy root.`,
  E_COOKIE_UNREADABLE: (file: string, reason: string) => `Cannot read the cookie ${file}: ${reason}. Run the CLI as the user who owns the deploy root.`,
  E_FRAME_TOO_LARGE: (size: number, limit: number) => `A control frame of ${size} bytes is over the limit of ${limit} bytes; the connection was closed.`,
  E_FRAME_INVALID: (reason: string) => `A control frame was refused: ${reason}; the connection was closed.`,
  E_KERNEL_TIMEOUT: (op: string, ms: number) => `The kernel did not answer '${op}' within ${ms} ms. Check 'kernel logs'; the kernel may be busy or stuck.`,
  E_HOOK_FAILED: (hook: string, command: string, reason: string) => `The ${hook} hook '${command}' failed: ${reason}. Fix the hook, or remove it from theseus.config.ts.`,
  E_PROBATION_FAILED: (service: string, version: string, reason: string, outcome: string) =>
    `${service}@${version} failed its probation: ${reason}. ${outcome}`,
  E_CHECKPOINT_CORRUPT: (file: string, reason: string) =>
    `The checkpoint ${file} is unusable: ${reason}. The kernel will not start this service from scratch by itself: restore the file from a backup, or delete it to start the service from init().`,
  E_CHECKPOINT_INCOMPATIBLE: (service: string, reason: string) =>
    `The checkpoint of ${service} cannot be loaded: ${reason}. Start on a release whose code can migrate it, or delete the checkpoint to start from init().`,
  E_NOTHING_TO_COMMIT: (version: string) => `Release ${version} is already permanent; there is nothing on trial to commit.`,
  E_SIGNING_KEY_INVALID: (file: string, reason: string) => `The key ${file} cannot be used: ${reason}. Use an ed25519 key in PEM (openssl genpkey -algorithm ed25519).`,
  E_RELEASE_UNSIGNED: (release: string, keys: string) => `${release} is not signed, and this deploy root only accepts releases signed by a key in ${keys}. Build it with 'kernel release --sign <key>'.`,
  E_RELEASE_BAD_SIGNATURE: (file: string, keys: string) => `${file} is not a valid signature of the manifest by any trusted key (${keys}). The release was changed after signing, or signed by another key.`,
  E_INSTALL_FAILED: (source: string, reason: string) => `Installing ${source} failed: ${reason}. Nothing was installed; free the space or fix the folder, then try again.`,
  E_REGISTRY_WRITE_FAILED: (file: string, reason: string) => `The release registry ${file} could not be written: ${reason}.`,
  E_STOP_GRACE_INVALID: (variable: string, value: string, max: number) =>
    `${variable}='${value}' is not a stop grace the kernel can use: give a whole number of milliseconds from 0 to ${max} (the time a stop keeps answering health 'draining' before its HTTP listeners close), or unset it.`,
  E_NOT_A_DEPLOY_ROOT: (root: string, missing: string) =>
    `${root} is not a deploy root: ${missing} is missing. Unpack a release tarball there first (tar -xzf <app>-<version>.tar.gz -C ${root}), or pass --root with the deploy root's folder.`,
  E_SYSTEMD_UNIT_VALUE: (option: string, value: string, reason: string) =>
    `${option} ${JSON.stringify(value)} cannot go into a systemd unit: ${reason}. Choose another value.`,
  E_REMOVE_REFUSED: (version: string, status: string) => `Release ${version} is ${status} and cannot be removed. Downgrade or upgrade away from it first.`,
  // The admin listener (/metrics and the dashboard).
  E_ADMIN_ADDRESS_INVALID: (file: string, value: string, reason: string) =>
    `admin in ${file} is invalid: ${value} ${reason}. Give admin: { host: '127.0.0.1', port: 9464 } (host an IP address or 'localhost', port 0 to 65535, 0 for any free one), or admin: false to turn it off.`,
  E_ADMIN_LISTEN_FAILED: (address: string, reason: string) =>
    `The admin listener (/metrics and the dashboard) cannot listen on ${address}: ${reason}. Free the port, or change admin in theseus.config.ts and build the release again.`,
  E_ADMIN_NOT_LISTENING: (root: string, hint: string) =>
    `The kernel at ${root} has no admin listener: its release turns it off (admin: false), or the kernel is not running. Start it with '${hint}', or set admin in theseus.config.ts.`,
  // The HTTP front door.
  E_HTTP_LISTEN_FAILED: (address: string, reason: string) =>
    `The HTTP front door cannot listen on ${address}: ${reason}. Free the port, or change http.listeners in theseus.config.ts.`,
  E_HTTP_NO_ROUTE: (method: string, path: string) => `No route for ${method} ${path}. Check the path; the release's http.listeners list the routes.`,
  E_HTTP_METHOD_NOT_ALLOWED: (path: string, method: string, allowed: string) => `${path} does not take ${method}; it takes ${allowed}.`,
  E_HTTP_BODY_TOO_LARGE: (limit: number) => `The request body is over the limit of ${limit} bytes. Send a smaller body, or raise http.maxBodyBytes in theseus.config.ts.`,
  E_HTTP_BUSY: (count: number, what: string) => `The kernel has ${count} ${what}, its limit; the request was refused. Try again shortly, or spread the load.`,
  E_HTTP_BAD_REPLY: (route: string, reason: string) =>
    `The handler of ${route} replied ${reason}; an HTTP handler must reply { status?, headers?, body? } with status 200-599. The client got 502.`,
  E_HTTP_REPLY_TOO_LARGE: (route: string, size: number, limit: number) =>
    `The handler behind ${route} replied ${size} bytes, over the limit of ${limit}; the client got 502. Reply with less (a link to a file, a page of results), or raise http.maxReplyBytes.`,
  E_HTTP_TIMEOUT: (route: string, ms: number) =>
    `The handler of ${route} did not reply within ${ms} ms; the client got 504. Make the handler reply sooner, or raise http.requestTimeoutMs.`,

  // The WebSocket front door (kernel/main/websockets.ts).
  E_WS_POOLED: (service: string) =>
    `The WebSocket route goes to '${service}', a pooled service: a pool keeps no state between calls, so it cannot remember a connection. Route the WebSocket path to a stateful service (one without \`pool\`).`,
  E_WS_NO_HANDLER: (service: string, event: string) =>
    `Service '${service}' has a WebSocket route but no sockets.${event} handler; the connection was closed with 1011. Add sockets: { ${event}(ctx, ...) { ... } } to its defineService, or remove the route.`,
  E_WS_BAD_RESULT: (service: string, event: string, problem: string) =>
    `The socket handler ${service}.sockets.${event}() returned ${problem}; a socket handler returns { state?, send?: [{ data, to? }], close?: [{ id?, code?, reason? }] } or nothing. Its state was not kept and nothing was sent.`,

  // State: snapshots, checkpoints and the plain-data rule (kernel/common/plain-data.ts and
  // state-codec.ts). E_STATE_NOT_CLONEABLE and E_MIGRATION_BAD_STATE, above, belong here too.
  E_STATE_UNREADABLE: (service: string, where: string, reason: string) =>
    `The state handed to ${service} (${where}) cannot be decoded: ${reason}. It was damaged, or written by a newer Node.js: restore the checkpoint it came from, or run the Node.js that wrote it.`,
  E_CHECKPOINT_NOT_PLAIN: (file: string, problem: string) =>
    `The checkpoint ${file} was written by an older kernel, and its state is not plain data by this kernel's rule: ${problem}. Run the older kernel, swap to service code that stores plain data (a migration can convert the stored value), then start this kernel; or delete the checkpoint to start from init().`,
  // The kernel's own faults: what no user input should cause.
  E_INTERNAL: (what: string) => `${what}. This is a kernel bug; please report it with the kernel's log.`,

  // Arguments checked against the schemas a service declares (`args` in defineService).
  E_ARGS_INVALID: (service: string, method: string, problem: string, signature: string) =>
    `${service}.${method}() was refused: ${problem}. It takes ${signature}. Nothing ran and the state was not touched; call it again with arguments of that shape.`,
} as const;

export type ErrorCode = keyof typeof messages;

/** Every registered code; a code the kernel raises must be one of these. */
export const errorCodes: ReadonlySet<string> = new Set(Object.keys(messages));

type MessageArgs<C extends ErrorCode> = Parameters<(typeof messages)[C]>;

export class TheseusError extends Error {
  /**
   * An ErrorCode when the kernel raised it (theseusError() takes only registered codes). Plain
   * `string` because errors also carry codes the kernel does not own: a service's handler may
   * throw its own (`OUT_OF_STOCK`) or a Node one (`ENOENT`), and the caller must see it as thrown.
   */
  readonly code: string;
  phase?: UpgradePhase;
  service?: string;

  constructor(code: string, message: string, options?: { cause?: unknown; phase?: UpgradePhase; service?: string }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'TheseusError';
    this.code = code;
    if (options?.phase) this.phase = options.phase;
    if (options?.service) this.service = options.service;
  }
}

export function theseusError<C extends ErrorCode>(code: C, ...args: MessageArgs<C>): TheseusError {
  const format = messages[code] as (...a: MessageArgs<C>) => string;
  return new TheseusError(code, format(...args));
}

/** What crosses a MessagePort in place of an Error. */
export interface SerializedError {
  name: string;
  message: string;
  code: string;
  phase?: UpgradePhase;
  service?: string;
  stack?: string;
}

export function serializeError(error: unknown, fallbackCode = 'E_INTERNAL'): SerializedError {
  if (error instanceof Error) {
    const coded = error as Error & { code?: unknown; phase?: UpgradePhase; service?: string };
    const out: SerializedError = {
      name: error.name,
      message: error.message,
      code: typeof coded.code === 'string' ? coded.code : fallbackCode,
    };
    if (coded.phase) out.phase = coded.phase;
    if (coded.service) out.service = coded.service;
    if (error.stack) out.stack = error.stack;
    return out;
  }
  return { name: 'Error', message: String(error), code: fallbackCode };
}

export function deserializeError(data: SerializedError): TheseusError {
  const error = new TheseusError(data.code, data.message);
  error.name = data.name === 'Error' ? 'TheseusError' : data.name;
  if (data.phase) error.phase = data.phase;
  if (data.service) error.service = data.service;
  if (data.stack) error.stack = data.stack;
  return error;
}

/** The error as a coded one, tagged with the upgrade phase it failed in (unless it already says). */
export function inPhase(error: unknown, phase: UpgradePhase): TheseusError {
  // An uncoded error keeps a code it carries (a Node error's ENOENT, say); otherwise E_INTERNAL.
  const coded = error instanceof TheseusError ? error : new TheseusError(serializeError(error).code, errorMessage(error), { cause: error });
  coded.phase ??= phase;
  return coded;
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
