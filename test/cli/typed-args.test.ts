// Typed doors from outside the kernel's process: the example releases, built and unpacked into a
// deploy root, run by the real `bin/kernel`; calls and casts come over the real control socket
// (the console's path). A wrong argument is refused with E_ARGS_INVALID, the state stays a clean
// number, and stays one across an upgrade done from the command line. The manifest and `describe`
// carry the declared arguments, and `.help <service>` is built from them.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { extract } from 'tar';
import { serviceHelp } from '../../kernel/cli/console-help.ts';
import { request } from '../../kernel/cli/control-client.ts';
import type { TheseusError } from '../../kernel/index.ts';
import { parseSequenceReply } from '../helpers.ts';
import { sharedExamples, tempDir } from '../release/helpers.ts';

const built = sharedExamples();
const roots: string[] = [];

after(() => {
  // Never leave a kernel behind, whatever failed.
  for (const root of roots) cli(root, 'stop');
});

function cli(root: string, ...args: string[]) {
  return spawnSync(join(root, 'bin', 'kernel'), args, { cwd: root, encoding: 'utf8', timeout: 60_000, env: { ...process.env, THESEUS_ROOT: '' } });
}

const refusedDelta = (error: TheseusError) => {
  assert.equal(error.code, 'E_ARGS_INVALID', error.message);
  assert.match(error.message, /^sequence\.incrementNumber\(\) was refused: argument 0 \(delta\) should be safe integer, and is the string "10"\. It takes incrementNumber\(delta: safe integer\)\./);
  return true;
};

test("over the control socket, incrementNumber('10') is refused (a cast too), the numbers stay consecutive, and stay so across an upgrade from the command line", async () => {
  const { results } = await built;
  const root = await tempDir('theseus-typed-');
  await extract({ file: results[0]!.tarball, cwd: root });
  roots.push(root);
  const started = cli(root, 'start');
  assert.equal(started.status, 0, started.stderr + started.stdout);

  const call = (method: string, args: unknown[]) => request(root, 'call', { service: 'sequence', method, args });
  const next = async () => parseSequenceReply(((await call('nextNumber', [])) as { reply: unknown }).reply);
  let expected = (await next()) + 1;

  // The console's bug: a string delta, sent as a cast. The kernel checks it before it answers "cast".
  await assert.rejects(call('incrementNumber', ['10']), refusedDelta);
  await assert.rejects(call('nextNumber', [1]), { code: 'E_ARGS_INVALID', message: /^sequence\.nextNumber\(\) was refused: it takes no arguments and was given 1/ });
  assert.equal(await next(), expected++);
  assert.deepEqual(await call('incrementNumber', [10]), { cast: true });
  expected += 10;
  assert.equal(await next(), expected++);

  // What the service declares, as `describe` answers it, and as `.help sequence` prints it.
  const [described] = await request(root, 'describe', {});
  assert.deepEqual(described!.args.incrementNumber, [
    { title: 'delta', description: 'added to the current number, once', minimum: Number.MIN_SAFE_INTEGER, maximum: Number.MAX_SAFE_INTEGER, type: 'integer' },
  ]);
  const help = serviceHelp(described!, 'sequence');
  assert.deepEqual(help.slice(0, 3), ['sequence 0.1.0 (vsn 0)', '  calls (each replies):', '    await sequence.nextNumber()']);
  assert.match(help[3]!, /^ {4}await sequence\.httpNext\(request: \{ method: string, path: string, query: /);
  assert.deepEqual(help.slice(5), ['  casts (no reply):', '    sequence.incrementNumber(delta: safe integer)', '        delta: added to the current number, once']);
  // The manifest the release was built with carries the same.
  const manifest = JSON.parse(await readFile(join(results[0]!.dir, 'manifest.json'), 'utf8')) as { services: { sequence: { args?: unknown } } };
  assert.deepEqual(manifest.services.sequence.args, described!.args);

  // Upgrade to 0.3.0 (the state gains a delta): the number carried is clean, and 0.3.0 refuses the same.
  const upgraded = cli(root, 'upgrade', results[2]!.tarball);
  assert.equal(upgraded.status, 0, upgraded.stderr + upgraded.stdout);
  assert.match(upgraded.stdout, /migration 0 -> 1 \(up, in 0\.3\.0\)/);
  assert.equal(await next(), expected++);
  await assert.rejects(call('incrementNumber', ['10']), refusedDelta);
  assert.equal(await next(), expected++);
  assert.equal(await next(), expected++);
  const [afterUpgrade] = await request(root, 'describe', {});
  assert.equal(afterUpgrade!.args.incrementNumber![0]!.description, 'the step between numbers from now on');

  assert.equal(cli(root, 'stop').status, 0);
});
