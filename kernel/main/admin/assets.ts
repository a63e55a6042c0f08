// The dashboard page's script, as the admin listener serves it: prebuilt next to the bundled
// kernel in a deployed release (lib/dashboard.js), else bundled once per process from the
// checkout. Runs in the kernel's main thread.

import { readFile } from 'node:fs/promises';
import { errorMessage } from '../../common/errors.ts';
import { DASHBOARD_SCRIPT, bundleDashboardScript } from '../../release/dashboard-bundle.ts';

let script: Promise<Uint8Array> | null = null;

export function dashboardScript(): Promise<Uint8Array> {
  script ??= (async () => {
    const prebuilt = await readFile(new URL(`./${DASHBOARD_SCRIPT}`, import.meta.url)).catch(() => null);
    return prebuilt ?? bundleDashboardScript();
  })().catch((error: unknown) => {
    // Not remembered: the next request tries again.
    script = null;
    throw new Error(`the dashboard's script could not be bundled: ${errorMessage(error)}`, { cause: error });
  });
  return script;
}
