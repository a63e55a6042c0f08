// Release configuration of the example sequence app at 0.5.0: the shared one again, without the
// audit log 0.4.0 added (services/sequence/shared/release-config.ts).
export { default } from '../shared/release-config.ts';
