// Sequence server, release 0.4.0: 0.3.0's code, and every number it hands out is cast to the audit
// log this release adds. The state is unchanged (vsn "1"); only who it uses changes.
import { defineService } from '../../../kernel/service.ts';
import base, { type SequenceState } from '../0.3.0/sequence.ts';

interface AuditApi {
  record(number: number): void;
}

export default defineService({
  ...base,
  uses: ['audit'],
  calls: {
    ...base.calls,
    nextNumber: ({ state, client }) => {
      client<AuditApi>('audit').record(state.currentNumber);
      return { reply: `The next number is ${state.currentNumber}`, state: { ...state, currentNumber: state.currentNumber + state.delta } satisfies SequenceState };
    },
    httpNext: ({ state, release, client }) => {
      client<AuditApi>('audit').record(state.currentNumber);
      return { reply: { body: { number: state.currentNumber, release } }, state: { ...state, currentNumber: state.currentNumber + state.delta } satisfies SequenceState };
    },
  },
});
