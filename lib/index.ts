export { bootVm, type BootResult } from "./boot.js";
export { VirtualMachine, type VmOptions, type VmExit, type VmState, type ShareOptions, type VsockPortOptions } from "./vm.js";
export * from "./errors.js";
