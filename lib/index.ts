export { Sandbox, type SandboxState, type ExecResult } from "./sandbox/sandbox.js";
export { SandboxProcess, type ProcessExit } from "./sandbox/process.js";
export type { SandboxOptions, ExecOptions } from "./sandbox/options.js";
export { bootVm, type BootResult } from "./vm/boot.js";
export { VirtualMachine, type VmOptions, type VmExit, type VmState, type ShareOptions, type VsockPortOptions } from "./vm/vm.js";
export { Volume, VolumeFs, type VolumeInfo } from "./volumes/volumes.js";
export type { VolumeSpec } from "./volumes/spec.js";
export type { NetworkOption, NetworkPolicy, ConnectRequest, ConnectionEvent } from "./network/policy.js";
export type { PortSpec, PublishedPort } from "./network/ports.js";
export { pullImage, listImages, removeImage, pruneImages, type PulledImage, type PullOptions, type PullProgress, type ImageConfig } from "./images/cache.js";
// Every error a caller can catch, each with one stable `code`.
export * from "./errors.js";
