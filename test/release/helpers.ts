// Helpers for the release tests: building the example's releases into a temporary folder, and
// writing hostile archives byte by byte (no tool would make them willingly).

import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { Header } from 'tar';

type EntryTypeName = 'File' | 'Directory' | 'SymbolicLink' | 'Link' | 'CharacterDevice' | 'BlockDevice' | 'FIFO';
import { buildRelease, type BuildResult } from '../../kernel/release/build.ts';
import { root } from '../helpers.ts';

export const exampleVersions = ['0.1.0', '0.2.0', '0.3.0'] as const;

export function exampleConfig(version: string): string {
  return join(root, 'services', 'sequence', version, 'theseus.config.ts');
}

export async function tempDir(prefix = 'theseus-test-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

/** Builds the example's three releases, in order, into a fresh folder. */
export async function buildExamples(outDir?: string): Promise<{ outDir: string; results: BuildResult[] }> {
  const dir = outDir ?? (await tempDir('theseus-releases-'));
  const results: BuildResult[] = [];
  for (const version of exampleVersions) results.push(await buildRelease({ configFile: exampleConfig(version), outDir: dir }));
  return { outDir: dir, results };
}

export interface RawEntry {
  path: string;
  type?: EntryTypeName;
  data?: Buffer;
  /** Declared size, when it should differ from the data's. */
  size?: number;
  linkpath?: string;
}

/** A .tar.gz holding exactly these entries, headers written as given. */
export function rawTarball(entries: RawEntry[]): Buffer {
  const blocks: Buffer[] = [];
  for (const entry of entries) {
    const data = entry.data ?? Buffer.alloc(0);
    const header = new Header({
      path: entry.path,
      type: entry.type ?? 'File',
      size: entry.size ?? (entry.type === undefined || entry.type === 'File' ? data.length : 0),
      mode: 0o644,
      mtime: new Date(0),
      ...(entry.linkpath ? { linkpath: entry.linkpath } : {}),
    });
    const block = Buffer.alloc(512);
    header.encode(block, 0);
    blocks.push(block);
    if (data.length > 0) {
      blocks.push(data, Buffer.alloc((512 - (data.length % 512)) % 512));
    }
  }
  blocks.push(Buffer.alloc(1024));
  return gzipSync(Buffer.concat(blocks));
}
