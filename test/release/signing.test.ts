// Signed releases: a deploy root that trusts public keys takes only releases signed by one of them.

import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { cp, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { extract } from 'tar';
import { startFromRoot } from '../../kernel/main/deploy-root.ts';
import { buildRelease } from '../../kernel/release/build.ts';
import { installRelease } from '../../kernel/release/install.ts';
import { logCollector } from '../helpers.ts';
import { exampleConfig, tempDir } from './helpers.ts';

async function keyPair(dir: string, name: string): Promise<{ privateKey: string; publicKey: string }> {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const files = { privateKey: join(dir, `${name}.key.pem`), publicKey: join(dir, `${name}.pub.pem`) };
  await writeFile(files.privateKey, privateKey.export({ type: 'pkcs8', format: 'pem' }));
  await writeFile(files.publicKey, publicKey.export({ type: 'spki', format: 'pem' }));
  return files;
}

async function trustingRoot(publicKey: string): Promise<string> {
  const root = await tempDir('theseus-trusting-');
  await mkdir(join(root, 'trusted-keys'));
  await cp(publicKey, join(root, 'trusted-keys', 'release.pem'));
  return root;
}

test('a root with trusted keys takes signed releases and refuses unsigned or wrongly signed ones', async () => {
  const keys = await tempDir('theseus-keys-');
  const ours = await keyPair(keys, 'ours');
  const theirs = await keyPair(keys, 'theirs');
  const signed = await buildRelease({ configFile: exampleConfig('0.1.0'), outDir: await tempDir(), signKey: ours.privateKey });
  const unsigned = await buildRelease({ configFile: exampleConfig('0.1.0'), outDir: await tempDir() });
  const foreign = await buildRelease({ configFile: exampleConfig('0.1.0'), outDir: await tempDir(), signKey: theirs.privateKey });

  assert.equal((await installRelease(await trustingRoot(ours.publicKey), signed.tarball)).version, '0.1.0');
  assert.equal((await installRelease(await trustingRoot(ours.publicKey), signed.dir)).version, '0.1.0');
  await assert.rejects(installRelease(await trustingRoot(ours.publicKey), unsigned.tarball), { code: 'E_RELEASE_UNSIGNED' });
  await assert.rejects(installRelease(await trustingRoot(ours.publicKey), foreign.dir), { code: 'E_RELEASE_BAD_SIGNATURE' });

  // A signature that no longer matches its manifest.
  const forged = await tempDir('theseus-forged-');
  await cp(signed.dir, forged, { recursive: true });
  await writeFile(join(forged, 'manifest.sig'), `${Buffer.alloc(64, 1).toString('base64')}\n`);
  await assert.rejects(installRelease(await trustingRoot(ours.publicKey), forged), { code: 'E_RELEASE_BAD_SIGNATURE' });

  // Without trusted keys, signatures are not required.
  const open = await tempDir('theseus-open-');
  assert.equal((await installRelease(open, unsigned.tarball)).version, '0.1.0');
});

test('a signed tarball boots in a trusting root; the same root refuses to boot an unsigned one', async () => {
  const keys = await tempDir('theseus-keys-');
  const ours = await keyPair(keys, 'ours');
  const signed = await buildRelease({ configFile: exampleConfig('0.1.0'), outDir: await tempDir(), signKey: ours.privateKey });
  const root = await trustingRoot(ours.publicKey);
  await extract({ file: signed.tarball, cwd: root });
  const booted = await startFromRoot(root, logCollector().onLog);
  await booted.kernel.stop();

  const unsigned = await buildRelease({ configFile: exampleConfig('0.1.0'), outDir: await tempDir() });
  const other = await trustingRoot(ours.publicKey);
  await extract({ file: unsigned.tarball, cwd: other });
  await assert.rejects(startFromRoot(other, logCollector().onLog), { code: 'E_RELEASE_UNSIGNED' });
});
