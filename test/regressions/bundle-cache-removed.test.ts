// Found when a temp-folder cleaner removed the bundle cache under a running kernel: the next
// upgrade failed to boot its new worker ("Cannot find module …/bundles/theseus-worker-….mjs"),
// because the worker runtime and the services' bundles were remembered by path for the life of
// the process. A long-lived kernel meets systemd-tmpfiles sooner or later. Now a remembered bundle
// whose file is gone is built again.

import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { Kernel } from '../../kernel/index.ts';
import { parseSequenceReply, sequenceRelease, type SequenceApi } from '../helpers.ts';
import { tempDir } from '../temp-dirs.ts';

test('an upgrade after the bundle cache was removed under the running kernel builds what it needs again', async () => {
  const cacheDir = join(await tempDir('theseus-cache-'), 'bundles');
  const kernel = await Kernel.start({ ...sequenceRelease('0.1.0'), cacheDir });
  try {
    const sequence = kernel.client<SequenceApi>('sequence');
    assert.equal(parseSequenceReply(await sequence.nextNumber()), 456);
    // Both directions: the release it came from was bundled into the cache too.
    await kernel.upgrade(sequenceRelease('0.2.0'));
    await rm(cacheDir, { recursive: true, force: true });
    const down = await kernel.downgrade(sequenceRelease('0.1.0'));
    assert.equal(down.outcome, 'switched');
    await rm(cacheDir, { recursive: true, force: true });
    const up = await kernel.upgrade(sequenceRelease('0.3.0'));
    assert.equal(up.outcome, 'switched');
    // Every swap carried the state: the number after 456 is next.
    assert.equal(parseSequenceReply(await sequence.nextNumber()), 457);
  } finally {
    await kernel.stop();
  }
});
