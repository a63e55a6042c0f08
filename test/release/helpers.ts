// Helpers for the release tests: building the example's releases into a temporary folder, and
// writing hostile archives byte by byte (no tool would make them willingly).

import { watch, type FSWatcher } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after } from 'node:test';
import { gzipSync } from 'node:zlib';
import { Header } from 'tar';

type EntryTypeName = 'File' | 'Directory' | 'SymbolicLink' | 'Link' | 'CharacterDevice' | 'BlockDevice' | 'FIFO';
import { buildRelease, type BuildResult } from '../../kernel/release/build.ts';
import { root } from '../helpers.ts';

import { tempDir } from '../temp-dirs.ts';

export { tempDir };
import { padding, tarHeader } from './raw-tar.ts';

export { paxData, rawTar, tarHeader, type RawHeader } from './raw-tar.ts';

export const exampleVersions = ['0.1.0', '0.2.0', '0.3.0'] as const;

export function exampleConfig(version: string): string {
  return join(root, 'services', 'sequence', version, 'theseus.config.ts');
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

/**
 * A .tar.gz whose entries declare `size` bytes of zeros each, built cheaply: gzip allows a stream
 * of members, so one compressed 16 MiB of zeros is repeated. Level 1, as an attacker would choose
 * it: node-tar aborts above a 1000:1 ratio, and level 1 stays near 230:1 (2 GiB is ~9 MB).
 */
export function gzipBomb(entries: Array<{ path: string; typeflag: string; size: number }>): Buffer {
  const unit = 16 * 1024 * 1024;
  const zeros = gzipSync(Buffer.alloc(unit), { level: 1 });
  const members: Buffer[] = [];
  for (const entry of entries) {
    members.push(gzipSync(tarHeader(entry, entry.size)));
    for (let left = entry.size; left > 0; left -= unit) members.push(left >= unit ? zeros : gzipSync(Buffer.alloc(left + padding(left).length), { level: 1 }));
  }
  members.push(gzipSync(Buffer.alloc(1024)));
  return Buffer.concat(members);
}

const openWatchers = new Set<FSWatcher>();

/**
 * Records every name created, changed or removed directly in `dirs` from now until stop(): "a
 * refused install wrote nothing" then means nothing was ever written there, not only that
 * nothing was left after the installer cleaned up. stop() writes a marker into each folder and
 * waits for its event; inotify reports a folder's events in order, so every earlier one has
 * arrived by then (no waiting on a clock).
 */
export function watchWrites(dirs: string[]): { stop(): Promise<string[]> } {
  // A test that fails before stop() must not leave a watcher holding the process open.
  if (openWatchers.size === 0) after(() => openWatchers.forEach((watcher) => watcher.close()));
  const seen: string[] = [];
  const markers = new Map<string, () => void>();
  const watchers = dirs.map((dir) =>
    watch(dir, (event, name) => {
      const path = join(dir, String(name));
      const arrived = markers.get(path);
      if (arrived) arrived();
      else if (!path.includes('.theseus-watch-marker')) seen.push(`${event} ${path}`);
    }),
  );
  for (const watcher of watchers) openWatchers.add(watcher);
  return {
    async stop() {
      await Promise.all(
        dirs.map(async (dir, index) => {
          const marker = join(dir, `.theseus-watch-marker-${index}`);
          const arrived = new Promise<void>((resolve) => markers.set(marker, resolve));
          await writeFile(marker, '');
          await arrived;
          await rm(marker);
        }),
      );
      for (const watcher of watchers) {
        watcher.close();
        openWatchers.delete(watcher);
      }
      return seen;
    },
  };
}
