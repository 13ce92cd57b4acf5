// The N-API addon (src/addon), loaded once.
import { createRequire } from "node:module";
import type { RawStat } from "../fs/types.js";
import { addonPath } from "./runtime.js";

export interface NativeVm {
  start(): number;
  stop(graceMs: number): void;
  /** onConnect's answer to a "connect-request" event. */
  verdict(id: number, allowed: boolean): void;
  /** Whether the running VM keeps Node's event loop alive (it does by default). */
  ref(): void;
  unref(): void;
  attach(id: number, spec: string): void;
  readonly pid: number | null;
}

export interface Native {
  /** krunbox's version the addon was built from. */
  version: string;
  /** The special range an address or prefix lies in (src/common/ip_address.h), or null. Throws TypeError for other text. */
  classifyAddress(addressOrPrefix: string): { kind: string; block: string } | null;
  Vm: new (runnerPath: string, config: object, onEvent: (line: string) => void) => NativeVm;
  /** Asynchronous, on libuv's threads; rejects with code ERR_KRUNBOX_FS (errno, syscall), _PATH_ESCAPE or _SPECIAL_FILE. */
  beneath: BeneathOps;
  // Synchronous twins, for image unpacking (small steps in krunbox's own cache).
  readdirBeneath(root: string, rel: string): NativeDirEntry[];
  /** An existing entry of that name is not an error. */
  mkdirBeneath(root: string, rel: string): void;
  /** Removes an empty folder too. */
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

export interface NativeDirEntry {
  name: string;
  type: "file" | "directory" | "symlink" | "other";
}

/**
 * File operations confined beneath `root` (src/addon/beneath_ops.h): regular
 * files and folders only, never a FIFO or device; `rel` is relative and
 * normalized (no leading "/", no "." or ".." parts).
 */
export interface BeneathOps {
  openRead(root: string, rel: string, follow: boolean): Promise<{ fd: number; size: number }>;
  openWrite(root: string, rel: string, mode: number, flags: "w" | "wx" | "a"): Promise<number>;
  readdir(root: string, rel: string): Promise<NativeDirEntry[]>;
  stat(root: string, rel: string, follow: boolean): Promise<RawStat>;
  readlink(root: string, rel: string): Promise<string>;
  mkdir(root: string, rel: string, mode: number, existOk: boolean): Promise<void>;
  rm(root: string, rel: string, recursive: boolean, allowEmptyDir: boolean): Promise<void>;
  rename(root: string, from: string, to: string): Promise<void>;
  create(root: string, rel: string, mode: number): Promise<number>;
  symlink(root: string, rel: string, target: string): Promise<void>;
  link(root: string, rel: string, existingRel: string): Promise<void>;
  openDir(root: string, rel: string, follow: boolean): Promise<number>;
}

let native: Native | undefined;
export function loadNative(): Native {
  if (!native) native = createRequire(import.meta.url)(addonPath()) as Native;
  return native;
}
