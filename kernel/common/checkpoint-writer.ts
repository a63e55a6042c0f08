// Writing one service's checkpoint again and again, as reply durability does, as fast as a
// crash-safe write allows. Each write is the same four steps as writeFileAtomic (a temporary
// file, its fsync, a rename over the checkpoint, an fsync of the folder), but two writes may
// overlap: the second one's bytes go to its own temporary file and are synced while the first is
// still being renamed. The renames happen strictly in the order the writes started, so the file
// on disk only ever moves forward. Runs in a service's worker thread.

import { mkdir, open, rename, rm } from 'node:fs/promises';
import { threadId } from 'node:worker_threads';
import { checkpointFile, encodeCheckpoint } from './checkpoints.ts';
import type { StateSnapshot } from './protocol.ts';

export class CheckpointWriter {
  #stateDir: string;
  #service: string;
  #file: string;
  #folderMade = false;
  #written = 0;
  /** The last write's rename: the next one waits for it. */
  #lastRename: Promise<void> = Promise.resolve();

  constructor(stateDir: string, service: string) {
    this.#stateDir = stateDir;
    this.#service = service;
    this.#file = checkpointFile(stateDir, service);
  }

  /**
   * Resolves once `snapshot` is the checkpoint on disk, and every write started before it too.
   * Once the rename is done the file holds the new state, whatever comes next: a failed fsync of
   * the folder then only risks the rename on a power cut, and comes back as `folderSyncError`
   * rather than as a failed write (a caller told "not written" would be told wrong).
   */
  write(release: string, snapshot: StateSnapshot): Promise<{ folderSyncError: unknown }> {
    const { head, body } = encodeCheckpoint(this.#service, release, snapshot);
    // Its own name per write: two may be under way at once. A kernel killed mid-write leaves one
    // behind; the kernel removes *.tmp files from the state folder at boot.
    const temporary = `${this.#file}.${process.pid}.${threadId}.${this.#written++}.tmp`;
    const synced = this.#writeTemporary(temporary, head, body);
    const earlier = this.#lastRename;
    const done = (async () => {
      try {
        await synced;
      } catch (error) {
        await rm(temporary, { force: true });
        throw error;
      }
      // In order: a later state must never be renamed over by an earlier one.
      await earlier.catch(() => undefined);
      try {
        await rename(temporary, this.#file);
      } catch (error) {
        await rm(temporary, { force: true });
        throw error;
      }
      try {
        const folder = await open(this.#stateDir, 'r');
        try {
          await folder.sync();
        } finally {
          await folder.close();
        }
      } catch (error) {
        return { folderSyncError: error };
      }
      return { folderSyncError: null };
    })();
    this.#lastRename = done.then(
      () => undefined,
      () => undefined,
    );
    return done;
  }

  async #writeTemporary(temporary: string, head: Uint8Array, body: Uint8Array): Promise<void> {
    if (!this.#folderMade) {
      await mkdir(this.#stateDir, { recursive: true, mode: 0o700 });
      this.#folderMade = true;
    }
    const handle = await open(temporary, 'w', 0o600);
    try {
      await handle.writev([head, body]);
      // The data (and the size that goes with it); the rename and the folder's fsync make the name.
      await handle.datasync();
    } finally {
      await handle.close();
    }
  }
}
