// Audit log, added in release 0.4.0 next to the sequence server: the sequence server casts every
// number it hands out here, and `auditLog` reads what was recorded. Release 0.5.0 removes it again;
// the kernel keeps its last state, so a downgrade to 0.4.0 brings it back where it stopped.
import { defineService, Type } from '../../../kernel/service.ts';

export interface AuditState {
  /** How many numbers were recorded, the first and the last of them. */
  count: number;
  first: number | null;
  last: number | null;
  /** Numbers that came at or below the one before: a sequence hands them out rising, so this stays 0. */
  outOfOrder: number;
}

export default defineService({
  vsn: '1',
  args: { record: [Type.Integer({ title: 'number', description: 'a number the sequence server handed out' })], auditLog: [] },
  init: (): AuditState => ({ count: 0, first: null, last: null, outOfOrder: 0 }),
  calls: {
    auditLog: ({ state }) => ({ reply: state }),
  },
  casts: {
    record: ({ state }, number) => ({
      state: {
        count: state.count + 1,
        first: state.first ?? number,
        last: number,
        outOfOrder: state.outOfOrder + (state.last !== null && number <= state.last ? 1 : 0),
      },
    }),
  },
});
