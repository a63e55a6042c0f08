// Sequence server, release 0.5.0: the audit log is removed again, so this is 0.3.0's code once more,
// in a release of its own (the kernel keeps the audit log's last state for a downgrade to 0.4.0).
export { default, type SequenceState } from '../0.3.0/sequence.ts';
