// Sequence server, release 0.3.0: incrementNumber now sets the step between numbers, so the state
// gains a delta. The state shape changed, so vsn goes from "0" to "1" with a migration each way.
import { defineService } from '../../../kernel/service.ts';
import { deltaSchema, sequenceArgs } from '../shared/args.ts';
import { readDelta } from '../shared/http.ts';

export interface SequenceState {
  currentNumber: number;
  delta: number;
}

export default defineService({
  vsn: '1',
  // Every call and cast declares its arguments: the kernel refuses others (E_ARGS_INVALID).
  args: { ...sequenceArgs, incrementNumber: [deltaSchema('the step between numbers from now on')] },
  init: (): SequenceState => ({ currentNumber: 456, delta: 1 }),
  calls: {
    nextNumber: ({ state }) => ({
      reply: `The next number is ${state.currentNumber}`,
      state: { ...state, currentNumber: state.currentNumber + state.delta },
    }),
    httpNext: ({ state, release }) => ({
      reply: { body: { number: state.currentNumber, release } },
      state: { ...state, currentNumber: state.currentNumber + state.delta },
    }),
    // As incrementNumber does in this release: the delta becomes the step between numbers.
    httpIncrement: ({ state }, request) => {
      const read = readDelta(request);
      if ('reply' in read) return { reply: read.reply };
      return { reply: { body: { delta: read.delta } }, state: { ...state, delta: read.delta } };
    },
  },
  casts: {
    incrementNumber: ({ state }, delta) => ({ state: { ...state, delta } }),
  },
  migrations: [
    {
      from: '0',
      to: '1',
      up(currentNumber: number, { log }): SequenceState {
        const next = { currentNumber, delta: 1 };
        log.info('Changing code from 0 to 1', { from: currentNumber, to: next });
        return next;
      },
      // Going back to 0.2.0 keeps the number; the step is lost, as vsn "0" has nowhere to keep it.
      down(state: SequenceState, { log }): number {
        log.info('Changing code from 1 to 0', { from: state, to: state.currentNumber });
        return state.currentNumber;
      },
    },
  ],
});
