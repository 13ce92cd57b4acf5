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

/**
 * Every live process of this test run (its environment carries this run's
 * KRUNBOX_TEST_BASE, so VMs of other runs on the machine don't count) whose
 * command name is one of krunbox's.
 */
export function vmProcesses(): { pid: number; comm: string }[] {
  const names = /^(qemu-system-x86|virtiofsd|vhost-device-vs|krunbox-runner)/;
  const mark = `KRUNBOX_TEST_BASE=${process.env.KRUNBOX_TEST_BASE}\0`;
  const found: { pid: number; comm: string }[] = [];
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, "utf8");
      const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
      if (!names.test(comm) || state === "Z") continue;
      if (fs.readFileSync(`/proc/${entry}/environ`, "latin1").includes(mark)) found.push({ pid: Number(entry), comm });
    } catch {
      // gone
    }
  }
  return found;
}

export async function waitFor<T>(what: string, probe: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
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

/**
 * Runs an ES module source in a separate Node process; resolves with its
 * trimmed stdout (what it printed before `timeoutMs`, if it is killed then).
 */
export function runModule(source: string, timeoutMs?: number): Promise<string> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, ["--input-type=module", "-e", source], { env: process.env, timeout: timeoutMs, killSignal: "SIGKILL" });
    let out = "";
    p.stdout.on("data", (d) => (out += d));
    p.on("close", () => resolve(out.trim()));
  });
}

/**
 * spawn() arguments that run `argv` in a private mount namespace whose /dev
 * has no kvm (only null, zero, random, urandom and fd), as on a host without
 * KVM. Needs root.
 */
export function withoutKvm(...argv: string[]): [string, string[]] {
  const script =
    'mount --make-rprivate / && d=$(mktemp -d) && mount -t tmpfs none "$d" && ' +
    'cp -a /dev/null /dev/zero /dev/random /dev/urandom /dev/fd "$d"/ && mount --bind "$d" /dev && umount "$d" && rmdir "$d" && exec "$0" "$@"';
  return ["unshare", ["-m", "sh", "-c", script, ...argv]];
}

/** A folder of links to every program on PATH except those `banned` says no to (a PATH without compilers, say). */
export function pathWithout(dir: string, banned: (name: string) => boolean): string {
  fs.mkdirSync(dir);
  for (const from of (process.env.PATH ?? "").split(path.delimiter)) {
    if (!from || !fs.existsSync(from)) continue;
    for (const name of fs.readdirSync(from))
      if (!banned(name) && !fs.existsSync(path.join(dir, name))) fs.symlinkSync(path.join(from, name), path.join(dir, name));
  }
  return dir;
}

/**
 * Every entry under `dir` (sorted, parents first, symlinks not followed),
 * each described by `describe` as lines: for comparing folder trees.
 */
export function listTree(dir: string, describe: (rel: string, st: fs.Stats, full: string) => string[]): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const name of fs.readdirSync(d).sort()) {
      const full = path.join(d, name);
      const st = fs.lstatSync(full);
      out.push(...describe(path.relative(dir, full), st, full));
      if (st.isDirectory()) walk(full);
    }
  };
  walk(dir);
  return out;
}
