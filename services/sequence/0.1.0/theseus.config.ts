// Release configuration of the example sequence app; its version is in package.json next to it.
// All three versions are released the same way (services/sequence/shared/release-config.ts).
export { default } from '../shared/release-config.ts';
