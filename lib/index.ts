export { Sandbox, type SandboxState, type SandboxEvents, type ExecResult } from "./sandbox/sandbox.js";
export { SandboxProcess, type ProcessExit, type SignalName } from "./sandbox/process.js";
export type { SandboxOptions, ExecOptions, ExecBufferOptions, SpawnOptions } from "./sandbox/options.js";
export { SandboxPool, type PoolOptions, type AcquireOptions } from "./pool/pool.js";
export { bootVm, type BootResult } from "./vm/boot.js";
export { VirtualMachine, type VmOptions, type VmExit, type VmState, type ShareOptions, type VsockPortOptions } from "./vm/vm.js";
export { Volume, type VolumeInfo } from "./volumes/volumes.js";
export { VolumeFs } from "./volumes/volume-fs.js";
export type { VolumeSpec } from "./volumes/spec.js";
export { FileSystem } from "./fs/base.js";
export { SandboxFs } from "./fs/sandbox-fs.js";
export { Stats, Dirent, type WatchEvent, type WatchOptions, type ReadFileOptions, type WriteFileOptions, type CopyOutOptions } from "./fs/types.js";
export type { NetworkOption, NetworkPolicy, ConnectRequest, ConnectionEvent } from "./network/policy.js";
export type { PortSpec, PublishedPort } from "./network/ports.js";
export { pullImage, listImages, removeImage, pruneImages, type PulledImage, type PullOptions, type PullProgress, type ImageConfig } from "./images/cache.js";
// Every error a caller can catch, each with one stable `code`.
export * from "./errors.js";
