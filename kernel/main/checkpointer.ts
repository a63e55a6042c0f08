// The kernel's side of durable state: checkpoints of the services whose durability is 'periodic'
// (on a timer, when a worker says enough changed, after a swap, at stop), the state a service
// resumes from at start or after a crash, and bringing a state of another vsn to the code that must
// adopt it. Services in durability 'reply' write their own file (kernel/worker/durable-replies.ts):
// this side then only reads it. Runs in the kernel's main thread.

import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { readCheckpoint, writeCheckpoint } from '../common/checkpoints.ts';
import { errorMessage, serializeError, theseusError } from '../common/errors.ts';
import { findMigrationPath } from '../common/migrations.ts';
import type { ServiceDescriptor, ServiceSource, StateSnapshot } from '../common/protocol.ts';
import type { KeptState } from '../common/status.ts';
import type { Bundle } from '../release/bundler.ts';
import type { KernelContext } from './kernel-context.ts';
import type { ServiceHost } from './service-host.ts';

/** A state and where it came from: the release whose code wrote it, and words for the log. */
export interface KnownState {
  snapshot: StateSnapshot;
  writtenBy: string;
  description: string;
  /** ISO time it was taken. */
  at: string;
}

export class Checkpointer {
  #context: KernelContext;
  /** Checkpoints being written, by service, so two never overlap. */
  #writing = new Map<string, Promise<void>>();
  #timer: NodeJS.Timeout | null = null;

  constructor(context: KernelContext) {
    this.#context = context;
  }

  /** A kernel killed mid-write leaves temporary files; the checkpoints beside them are whole. */
  async removeTemporaryFiles(): Promise<void> {
    const stateDir = this.#context.options.stateDir;
    if (!stateDir) return;
    for (const name of await readdir(stateDir).catch(() => [] as string[])) {
      if (name.endsWith('.tmp')) await rm(join(stateDir, name), { force: true });
    }
  }

  startTimer(): void {
    const { checkpointIntervalMs } = this.#context.options;
    if (checkpointIntervalMs <= 0) return;
    this.#timer = setInterval(() => void this.checkpoint().catch(() => undefined), checkpointIntervalMs);
    this.#timer.unref();
  }

  /** Stops the timer and waits for the checkpoints being written. */
  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    await Promise.all(this.#writing.values());
  }

  /** Resolves once no checkpoint of this service is being written. */
  settled(service: string): Promise<void> {
    return this.#writing.get(service) ?? Promise.resolve();
  }

  /**
   * Writes a checkpoint of each running service (or of the named ones). `fresh` waits for one
   * already in progress and takes a new one, so it reflects the state from now on (after a swap,
   * or when a worker says enough changed while one was being written).
   */
  async checkpoint(services: string[] = [...this.#context.hosts.keys()], options: { fresh?: boolean } = {}): Promise<void> {
    const stateDir = this.#context.options.stateDir;
    if (!this.#context.running()) return;
    await Promise.all(
      services.map(async (name) => {
        const host = this.#context.hosts.get(name);
        if (!host || host.state !== 'running') return;
        // In reply durability the worker writes its own file, before each reply: a write from
        // here could land after a newer one of the worker's and put the file back in time.
        if (host.source.durability === 'reply') return;
        const running = this.#writing.get(name);
        if (running && !options.fresh) return running;
        if (running) await running;
        if (this.#writing.has(name)) return this.#writing.get(name);
        const worker = host.current;
        return this.#writeOne(name, async () => {
          const { snapshot } = await worker.request('checkpoint', {}, this.#context.options.controlTimeoutMs);
          // None while a swap pre-copies its keyed store: the swap keeps the state once through.
          if (!snapshot) return;
          // Kept in memory for a restart, and on disk for the next start.
          host.lastSnapshot = { snapshot, release: worker.release, at: new Date().toISOString() };
          if (stateDir) await writeCheckpoint(stateDir, name, worker.release, snapshot);
        });
      }),
    );
  }

  /** Runs one checkpoint of `name`, registered as the one being written; a failure is logged. */
  #writeOne(name: string, write: () => Promise<unknown>): Promise<void> {
    const done = write()
      .then(
        () => undefined,
        (error: unknown) => this.#context.log('error', `${name}: checkpoint failed: ${errorMessage(error)}`, { code: serializeError(error).code }),
      )
      .finally(() => this.#writing.delete(name));
    this.#writing.set(name, done);
    return done;
  }

  /**
   * The state a pre-copied swap switched in with, as the retiring old worker gave it: kept for a
   * restart and written as the checkpoint that follows the swap, unless a newer one was taken
   * since `at` (the switch). It stands in for the checkpoint other swaps take of the new worker,
   * which would encode a whole store in the thread that now serves.
   */
  async keepSwitched(host: ServiceHost, snapshot: StateSnapshot, release: string, at: string): Promise<void> {
    const name = host.name;
    // One writer per file: after any checkpoint already on its way.
    while (this.#writing.has(name)) await this.#writing.get(name);
    if (host.lastSnapshot && host.lastSnapshot.at > at) return;
    host.lastSnapshot = { snapshot, release, at };
    const stateDir = this.#context.options.stateDir;
    if (stateDir) await this.#writeOne(name, () => writeCheckpoint(stateDir, name, release, snapshot));
  }

  /** The final state a stopping worker handed back, written unless the worker wrote it itself. */
  async writeFinal(host: ServiceHost, stopped: { snapshot?: StateSnapshot; persisted?: boolean }): Promise<void> {
    const stateDir = this.#context.options.stateDir;
    if (!stopped.snapshot || !stateDir || stopped.persisted) return;
    await writeCheckpoint(stateDir, host.name, host.release, stopped.snapshot).catch((error: unknown) =>
      this.#context.log('error', `${host.name}: the final checkpoint could not be written: ${errorMessage(error)}`),
    );
  }

  /**
   * The state a service resumes from at start: its checkpoint, brought to the booting code's vsn.
   * A corrupt checkpoint, or one no code here can migrate, stops the start: state is never
   * silently reset to init().
   */
  async restored(host: ServiceHost): Promise<StateSnapshot | null> {
    return (await this.resumable(host))?.snapshot ?? null;
  }

  /** restored(), with the release whose code wrote the checkpoint. */
  async resumable(host: ServiceHost): Promise<{ snapshot: StateSnapshot; release: string } | null> {
    const stateDir = this.#context.options.stateDir;
    if (!stateDir) return null;
    const checkpoint = await readCheckpoint(stateDir, host.name);
    if (!checkpoint) return null;
    const { snapshot, header } = checkpoint;
    const restored = await this.adoptable(host.name, snapshot, host.descriptor, header.release);
    this.#context.log('info', `${host.name} resumes from its checkpoint of ${header.at} (release ${header.release}, vsn ${header.vsn})`);
    return { snapshot: restored, release: header.release };
  }

  /**
   * The checkpoints of services that do not run (a release removed them): kept, so a release that
   * brings one back resumes from it. An unreadable one is listed with its problem.
   */
  async keptStates(running: readonly string[]): Promise<KeptState[]> {
    const stateDir = this.#context.options.stateDir;
    if (!stateDir) return [];
    const kept: KeptState[] = [];
    for (const name of (await readdir(stateDir).catch(() => [] as string[])).sort()) {
      const service = name.endsWith('.ckpt') ? name.slice(0, -'.ckpt'.length) : null;
      if (service === null || running.includes(service)) continue;
      try {
        const checkpoint = await readCheckpoint(stateDir, service);
        if (checkpoint) kept.push({ service, release: checkpoint.header.release, vsn: checkpoint.header.vsn, at: checkpoint.header.at, bytes: checkpoint.header.size });
      } catch (error) {
        kept.push({ service, release: '?', vsn: '?', at: '?', bytes: 0, problem: errorMessage(error) });
      }
    }
    return kept;
  }

  /**
   * The freshest state of a service whose worker is gone. In reply durability that is the file
   * on disk, which holds every change a caller was told of, unless the kernel's copy is newer (a
   * worker that took over from one in 'periodic' and died before its first write left the file
   * behind the switch). Otherwise the copy in memory (from the last checkpoint or switch), else
   * the file. Null: none was ever saved.
   */
  async lastState(host: ServiceHost): Promise<KnownState | null> {
    if (host.pendingSnapshot) await host.pendingSnapshot;
    const stateDir = this.#context.options.stateDir;
    const fromDisk = async (): Promise<KnownState | null> => {
      const checkpoint = stateDir ? await readCheckpoint(stateDir, host.name) : null;
      return checkpoint && { snapshot: checkpoint.snapshot, writtenBy: checkpoint.header.release, description: `its checkpoint of ${checkpoint.header.at}`, at: checkpoint.header.at };
    };
    const inMemory: KnownState | null = host.lastSnapshot && {
      snapshot: host.lastSnapshot.snapshot,
      writtenBy: host.lastSnapshot.release,
      description: `its state of ${host.lastSnapshot.at}`,
      at: host.lastSnapshot.at,
    };
    if (host.source.durability === 'reply') {
      const onDisk = await fromDisk();
      if (onDisk && !(inMemory && inMemory.at > onDisk.at)) return onDisk;
    }
    return inMemory ?? fromDisk();
  }

  /**
   * `snapshot` as code that declares `target` can adopt it: as it is when that code has the same
   * vsn or migrates it up; otherwise migrated down in the code of the release that wrote it,
   * which alone knows how (given here, or an installed release found by resolveRelease).
   */
  async adoptable(
    service: string,
    snapshot: StateSnapshot,
    target: Pick<ServiceDescriptor, 'vsn' | 'migrations'>,
    writtenBy: string | { release: string; bundle: Bundle; source: ServiceSource },
  ): Promise<StateSnapshot> {
    if (snapshot.vsn === target.vsn || findMigrationPath(target.migrations, snapshot.vsn, target.vsn, 'up')) return snapshot;
    let code = typeof writtenBy === 'string' ? null : writtenBy;
    if (typeof writtenBy === 'string') {
      const source = (await this.#context.options.resolveRelease?.(writtenBy))?.[service];
      if (!source) throw theseusError('E_CHECKPOINT_INCOMPATIBLE', service, `it holds vsn '${snapshot.vsn}' from release ${writtenBy}, which is not installed, and the code that must adopt it has vsn '${target.vsn}'`);
      code = { release: writtenBy, bundle: await this.#context.bundle(source, service), source };
    }
    const converter = await this.#context.loadWorker(service, code!.release, code!.bundle, { ...code!.source, durability: 'periodic' });
    try {
      // A copy: the caller may keep the original.
      const bytes = snapshot.bytes.slice();
      const { snapshot: converted } = await converter.request('convert', { snapshot: { vsn: snapshot.vsn, bytes }, toVsn: target.vsn }, this.#context.options.controlTimeoutMs, [bytes.buffer]);
      this.#context.log('info', `${service}: its state was migrated down from vsn ${snapshot.vsn} to ${target.vsn} in ${code!.release}'s code`);
      return converted;
    } catch (error) {
      throw theseusError('E_CHECKPOINT_INCOMPATIBLE', service, errorMessage(error));
    } finally {
      await converter.terminate();
    }
  }
}
