// Signed releases (optional): `kernel release --sign key.pem` signs manifest.json with ed25519
// into manifest.sig. A deploy root that holds trusted public keys in <root>/trusted-keys/*.pem
// refuses a release that is unsigned or whose signature no trusted key verifies. The manifest
// lists every file's sha256, so signing it signs the whole release. Uses node:crypto only.

import { createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { errorMessage, theseusError } from '../common/errors.ts';

export const SIGNATURE_FILE = 'manifest.sig';

export async function signManifest(manifestText: string, privateKeyFile: string): Promise<string> {
  let key: KeyObject;
  try {
    key = createPrivateKey(await readFile(privateKeyFile));
  } catch (error) {
    throw theseusError('E_SIGNING_KEY_INVALID', privateKeyFile, errorMessage(error));
  }
  if (key.asymmetricKeyType !== 'ed25519') throw theseusError('E_SIGNING_KEY_INVALID', privateKeyFile, `it is a ${key.asymmetricKeyType ?? 'symmetric'} key, not ed25519`);
  return `${sign(null, Buffer.from(manifestText), key).toString('base64')}\n`;
}

/** The public keys a deploy root trusts; none means signatures are not required. */
export async function trustedKeys(root: string): Promise<Array<{ file: string; key: KeyObject }>> {
  const dir = join(root, 'trusted-keys');
  const names = (await readdir(dir).catch(() => [] as string[])).filter((name) => name.endsWith('.pem')).sort();
  const keys: Array<{ file: string; key: KeyObject }> = [];
  for (const name of names) {
    const file = join(dir, name);
    try {
      keys.push({ file, key: createPublicKey(await readFile(file)) });
    } catch (error) {
      throw theseusError('E_SIGNING_KEY_INVALID', file, errorMessage(error));
    }
  }
  return keys;
}

/** Throws unless a trusted key verifies the release's signature (when the root trusts any key). */
export async function checkSignature(root: string, releaseDir: string, manifestText: string): Promise<void> {
  const keys = await trustedKeys(root);
  if (keys.length === 0) return;
  const signatureFile = join(releaseDir, SIGNATURE_FILE);
  const signature = await readFile(signatureFile, 'utf8').catch(() => null);
  if (signature === null) throw theseusError('E_RELEASE_UNSIGNED', releaseDir, join(root, 'trusted-keys'));
  const bytes = Buffer.from(signature.trim(), 'base64');
  if (!keys.some(({ key }) => verify(null, Buffer.from(manifestText), key, bytes))) {
    throw theseusError('E_RELEASE_BAD_SIGNATURE', signatureFile, keys.map((k) => k.file).join(', '));
  }
}
