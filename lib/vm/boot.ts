import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { VirtualMachine, type VmOptions } from "./vm.js";

export interface BootResult {
  /** The command's exit code (null if a signal ended it). */
  exitCode: number | null;
  signal: number | null;
  /** The guest's serial console: kernel messages and the command's output (last 4 MiB). */
  console: string;
  /** "kvm" or "tcg". */
  accel: string | undefined;
}

const maxConsoleBytes = 4 << 20;

function readTail(file: string): string {
  const fd = fs.openSync(file, "r");
  try {
    const size = fs.fstatSync(fd).size;
    const length = Math.min(size, maxConsoleBytes);
    const buf = Buffer.alloc(length);
    fs.readSync(fd, buf, 0, length, size - length);
    return buf.toString("utf8");
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Boots a VM, runs `options.command` in it to completion and returns its
 * exit status and console output. Rejects with a typed KrunboxError when
 * the VM cannot boot or the guest crashes.
 */
export async function bootVm(options: VmOptions): Promise<BootResult> {
  const dir = options.consolePath ? undefined : fs.mkdtempSync(path.join(os.tmpdir(), "krunbox-console-"));
  const consolePath = options.consolePath ?? path.join(dir!, "console.log");
  try {
    const vm = VirtualMachine.start({ ...options, consolePath });
    const exit = await vm.exited;
    return { exitCode: exit.code, signal: exit.signal, console: readTail(consolePath), accel: vm.accel };
  } finally {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  }
}
