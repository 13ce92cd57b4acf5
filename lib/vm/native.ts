// The N-API addon (src/addon), loaded once.
import { createRequire } from "node:module";
import { addonPath } from "./runtime.js";

export interface NativeVm {
  start(): number;
  stop(graceMs: number): void;
  /** onConnect's answer to a "connect-request" event. */
  verdict(id: number, allowed: boolean): void;
  readonly pid: number | null;
}

export interface Native {
  /** krunbox's version the addon was built from. */
  version: string;
  Vm: new (runnerPath: string, config: object, onEvent: (line: string) => void) => NativeVm;
  readFileBeneath(root: string, rel: string): Buffer;
  writeFileBeneath(root: string, rel: string, data: Buffer, mode: number): void;
  readdirBeneath(root: string, rel: string): { name: string; type: "file" | "directory" | "symlink" | "other" }[];
  mkdirBeneath(root: string, rel: string): void;
  rmBeneath(root: string, rel: string, recursive: boolean): void;
  /** A new file's fd, open for writing; an entry of that name is replaced, never followed. */
  createBeneath(root: string, rel: string, mode: number): number;
  symlinkBeneath(root: string, rel: string, target: string): void;
  linkBeneath(root: string, rel: string, existingRel: string): void;
  openDirBeneath(root: string, rel: string): number;
  /** A held lock's fd, or -1 when another holder conflicts. */
  flock(path: string, exclusive: boolean): number;
  unlock(fd: number): void;
}

let native: Native | undefined;
export function loadNative(): Native {
  if (!native) native = createRequire(import.meta.url)(addonPath()) as Native;
  return native;
}
