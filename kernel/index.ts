// The kernel's public main-thread API. Only re-exports live here.
export { Kernel, type KernelOptions } from './main/kernel.ts';
export type { FrontDoorStats, ServiceStatus } from './common/status.ts';
export { SwapError, type SwapReport, type ServiceSwapReport, type SwapTarget } from './main/upgrade/report.ts';
export { closeClient } from './common/client.ts';
export { TheseusError, type ErrorCode } from './common/errors.ts';
export type { LogRecord } from './common/protocol.ts';
export type { ClientOf } from './service.ts';
export { HttpFrontDoor, type FrontDoorOptions } from './main/http-front-door.ts';
export type { HttpConfig, HttpRoute } from './release/manifest.ts';
export type { HttpReply, HttpRequest } from './common/protocol.ts';
