export { Sandbox, type SandboxState, type ExecResult } from "./sandbox.js";
export { SandboxProcess, type ProcessExit } from "./process.js";
export type { SandboxOptions, ExecOptions } from "./options.js";
export { bootVm, type BootResult } from "./boot.js";
export { VirtualMachine, type VmOptions, type VmExit, type VmState, type ShareOptions, type VsockPortOptions } from "./vm.js";
export * from "./errors.js";
export {
  Volume,
  VolumeFs,
  VolumeExistsError,
  VolumeInUseError,
  VolumeNotFoundError,
  PathEscapeError,
  type VolumeInfo,
  type VolumeSpec,
} from "./volumes.js";
export { pullImage, listImages, removeImage, pruneImages, ImageInUseError, ImageNotFoundError, type PulledImage, type PullOptions, type PullProgress, type ImageConfig } from "./images.js";
export { RegistryError, DigestMismatchError } from "./oci/registry.js";
export { UnsafeLayerError } from "./oci/unpack.js";
