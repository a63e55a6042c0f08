// Release configuration of the example sequence app at 0.4.0: the shared one, with the audit log
// added next to the sequence server (services/sequence/shared/release-config.ts).
import { defineRelease } from '../../../kernel/release/config.ts';
import shared from '../shared/release-config.ts';

export default defineRelease({
  ...shared,
  services: {
    ...shared.services,
    // Periodic: a kill -9 may lose the last records since the checkpoint, never a number.
    audit: { entry: './audit.ts' },
  },
});
