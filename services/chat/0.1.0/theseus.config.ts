// Release configuration of the chat example; its version is in package.json next to it.
// Every version is released the same way (services/chat/shared/release-config.ts).
export { default } from '../shared/release-config.ts';
