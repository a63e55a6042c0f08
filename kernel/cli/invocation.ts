// How the user ran the CLI, so that every command it suggests works where it runs: `node kernel`
// in the repo, `bin/kernel` in a deploy root, `npx kernel` through npx, `kernel` from the PATH
// (after `npm link`). Runs in the CLI's process; loads nothing but node: modules.

import { statSync } from 'node:fs';
import { basename, delimiter, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const thisFile = fileURLToPath(import.meta.url);

/**
 * The deploy root this CLI runs in, or null when it runs from the repo or an installed package. A
 * deployed CLI is one bundle, lib/kernel.mjs, next to the root's bin/kernel launcher.
 */
export const bundledRoot: string | null = (() => {
  if (basename(thisFile) !== 'kernel.mjs' || basename(dirname(thisFile)) !== 'lib') return null;
  const root = dirname(dirname(thisFile));
  return statSync(join(root, 'bin', 'kernel'), { throwIfNoEntry: false })?.isFile() ? root : null;
})();

/** A path as the user would type it from the current folder. */
function typed(path: string): string {
  const fromHere = relative(process.cwd(), path);
  return fromHere && !fromHere.startsWith('..') ? fromHere : path;
}

let name: string | null = null;

/** The command that runs this CLI from the current folder: what every suggestion starts with. */
export function commandName(): string {
  name ??= (() => {
    if (bundledRoot) return resolve(process.cwd()) === bundledRoot ? 'bin/kernel' : join(bundledRoot, 'bin', 'kernel');
    // npx and `npm exec` set this for the command they run.
    if (process.env.npm_command === 'exec') return 'npx kernel';
    const script = process.argv[1];
    if (!script) return 'kernel';
    // `node kernel` names the folder (Node runs its index.js); `node kernel/index.js` the file.
    if (statSync(script, { throwIfNoEntry: false })?.isDirectory() || /\.[cm]?[jt]s$/.test(script)) return `node ${typed(script)}`;
    // The package's bin, linked by npm: by its name when its folder is on the PATH.
    const onPath = (process.env.PATH ?? '').split(delimiter).some((dir) => dir !== '' && resolve(dir) === dirname(resolve(script)));
    return onPath ? basename(script) : typed(script);
  })();
  return name;
}

/**
 * The text with every command it quotes ('kernel start', `kernel logs -f`) written the way that
 * works here. Messages, in the registry and from the kernel, name commands as `kernel <verb>`.
 */
export function localize(text: string): string {
  const command = commandName();
  return command === 'kernel' ? text : text.replace(/(['`])kernel (?=[a-z-])/g, `$1${command} `);
}
