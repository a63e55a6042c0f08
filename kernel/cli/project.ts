// A project that keeps one release configuration per version instead of one theseus.config.ts:
// the Theseus repo's example, services/sequence/<version>/theseus.config.ts. `kernel start` builds
// its releases; `init` and `release` without --config say how to use it. Runs in the CLI's process.

import { readdir, stat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import semver from 'semver';
import { DEFAULT_CONFIG_FILE } from '../common/deploy-paths.ts';

export interface VersionedConfig {
  version: string;
  /** The configuration file, absolute. */
  config: string;
}

/** When services/ holds several apps (the repo's sequence and chat examples), the one `kernel start` runs. */
export const MAIN_EXAMPLE_APP = 'sequence';

/**
 * The configurations under services/<app>/<version>/theseus.config.ts, oldest first; none when the
 * folder has a theseus.config.ts of its own (that one is the project's). Of several apps, only
 * MAIN_EXAMPLE_APP's (else the first by name): their versions would share releases/<version>/.
 */
export async function versionedConfigs(dir: string): Promise<VersionedConfig[]> {
  if (await stat(join(dir, DEFAULT_CONFIG_FILE)).catch(() => null)) return [];
  const found: VersionedConfig[] = [];
  const apps = (await readdir(join(dir, 'services')).catch(() => [] as string[])).sort();
  const withVersions: string[] = [];
  for (const app of apps) {
    for (const version of await readdir(join(dir, 'services', app)).catch(() => [] as string[])) {
      if (semver.valid(version) === version && (await stat(join(dir, 'services', app, version, DEFAULT_CONFIG_FILE)).catch(() => null))?.isFile()) {
        withVersions.push(app);
        break;
      }
    }
  }
  const chosen = withVersions.includes(MAIN_EXAMPLE_APP) ? MAIN_EXAMPLE_APP : withVersions[0];
  for (const app of chosen === undefined ? [] : [chosen]) {
    for (const version of await readdir(join(dir, 'services', app)).catch(() => [] as string[])) {
      const config = join(dir, 'services', app, version, DEFAULT_CONFIG_FILE);
      if (semver.valid(version) === version && (await stat(config).catch(() => null))?.isFile()) found.push({ version, config });
    }
  }
  return found.sort((a, b) => semver.compare(a.version, b.version));
}

/** `services/sequence/{0.1.0,0.2.0,0.3.0,0.4.0,0.5.0}/theseus.config.ts`: the configurations, in a few words. */
export function describeConfigs(dir: string, configs: readonly VersionedConfig[]): string {
  const paths = configs.map((c) => relative(dir, c.config));
  const [first] = paths;
  if (!first) return 'none';
  // The usual layout differs only in the version folder: name it once, with the versions in braces.
  const pattern = first.replace(configs[0]!.version, '<version>');
  const same = configs.every((c, i) => paths[i] === pattern.replace('<version>', c.version));
  return same && configs.length > 1 ? pattern.replace('<version>', `{${configs.map((c) => c.version).join(',')}}`) : paths.join(', ');
}
