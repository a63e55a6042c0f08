// A release that changes only its runtimeConfig, end to end: `kernel release` plans it as
// "config changed", `kernel upgrade` swaps it in (the same code, the new ctx.config), and
// `kernel downgrade` brings the old config back. Before, such a release was refused as
// "changes no running service", although the README promised ctx.config.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { extract } from 'tar';
import { request } from '../../kernel/cli/control-client.ts';
import { buildRelease } from '../../kernel/release/build.ts';
import { root as repo } from '../helpers.ts';
import { tempDir } from '../release/helpers.ts';

const roots: string[] = [];

function cli(root: string, ...args: string[]) {
  return spawnSync(join(root, 'bin', 'kernel'), args, { cwd: root, encoding: 'utf8', timeout: 60_000, env: { ...process.env, THESEUS_ROOT: '' } });
}

after(() => {
  for (const root of roots) cli(root, 'stop');
});

test('a config-only release: planned as "config changed", upgraded and downgraded from the command line, each config seen from the first call after the switch', async () => {
  const app = await tempDir('theseus-config-app-');
  await mkdir(join(app, 'svc'));
  await writeFile(
    join(app, 'svc', 'greeter.ts'),
    `import { defineService } from '${repo}kernel/service.ts';
export default defineService({
  vsn: '0',
  init: () => 0,
  calls: { greet: ({ state, config }) => ({ reply: \`\${String(config.greeting)} #\${state + 1}\`, state: state + 1 }) },
});
`,
  );
  const build = async (version: string, greeting: string) => {
    await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'greeter', version, type: 'module' }));
    await writeFile(
      join(app, 'theseus.config.ts'),
      `import { defineRelease } from '${repo}kernel/release/config.ts';
export default defineRelease({ app: 'greeter', services: { greeter: { entry: './svc/greeter.ts' } }, probationMs: 0, runtimeConfig: { greeting: '${greeting}' } });
`,
    );
    const lines: string[] = [];
    const result = await buildRelease({ configFile: join(app, 'theseus.config.ts'), outDir: join(app, 'releases'), log: (line) => lines.push(line) });
    return { result, log: lines.join('\n') };
  };
  const first = await build('0.1.0', 'hello');
  const second = await build('0.1.1', 'hi');
  assert.match(second.log, /plan: 0\.1\.0 -> 0\.1\.1: greeter config changed/);
  const plan = JSON.parse(await readFile(join(second.result.dir, 'plan.json'), 'utf8')) as { services: Record<string, { change: string }> };
  assert.equal(plan.services.greeter!.change, 'config');

  const root = await tempDir('theseus-config-root-');
  await extract({ file: first.result.tarball, cwd: root });
  roots.push(root);
  assert.equal(cli(root, 'start').status, 0);
  const greet = async () => ((await request(root, 'call', { service: 'greeter', method: 'greet', args: [] })) as { reply: string }).reply;
  assert.equal(await greet(), 'hello #1');

  const up = cli(root, 'upgrade', second.result.dir);
  assert.equal(up.status, 0, up.stdout + up.stderr);
  assert.match(up.stdout, /greeter: 0\.1\.0 \(vsn 0\) -> 0\.1\.1 \(vsn 0\), config changed, migration none, .*switched/);
  assert.equal(await greet(), 'hi #2', 'the first call after the switch sees the new config, and the state came along');

  const down = cli(root, 'downgrade', '0.1.0');
  assert.equal(down.status, 0, down.stdout + down.stderr);
  assert.equal(await greet(), 'hello #3');
  assert.equal(cli(root, 'stop').status, 0);
});
