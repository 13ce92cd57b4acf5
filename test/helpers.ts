import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

export function tempDir(prefix = "krunbox-t-"): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** Processes whose process group is `pgid` (a runner and its helpers). */
export function processGroup(pgid: number): { pid: number; comm: string }[] {
  const found: { pid: number; comm: string }[] = [];
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, "utf8");
      const close = stat.lastIndexOf(")");
      const fields = stat.slice(close + 2).split(" ");
      // fields: state ppid pgrp ...
      if (Number(fields[2]) === pgid && fields[0] !== "Z")
        found.push({ pid: Number(entry), comm: stat.slice(stat.indexOf("(") + 1, close) });
    } catch {
      // the process ended while we looked
    }
  }
  return found;
}

/** Every live process whose command name is one of krunbox's. */
export function vmProcesses(): { pid: number; comm: string }[] {
  const names = /^(qemu-system-x86|virtiofsd|vhost-device-vs|krunbox-runner)/;
  const found: { pid: number; comm: string }[] = [];
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, "utf8");
      const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
      if (names.test(comm) && state !== "Z") found.push({ pid: Number(entry), comm });
    } catch {
      // gone
    }
  }
  return found;
}

export async function waitFor<T>(what: string, probe: () => T | undefined | false, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export function openFds(): number {
  return fs.readdirSync("/proc/self/fd").length;
}

export function runDirEntries(): string[] {
  const dir = process.env.KRUNBOX_RUN_DIR!;
  return fs.existsSync(dir) ? fs.readdirSync(dir) : [];
}

/** Runs an ES module source in a separate Node process; resolves with its trimmed stdout. */
export function runModule(source: string): Promise<string> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, ["--input-type=module", "-e", source], { env: process.env });
    let out = "";
    p.stdout.on("data", (d) => (out += d));
    p.on("close", () => resolve(out.trim()));
  });
}
