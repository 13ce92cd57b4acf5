import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { expect } from "vitest";

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

/**
 * This process's descriptors of files and folders (not sockets, pipes or
 * event fds, which the test runner itself opens and closes at any time):
 * what a file operation could leak.
 */
export function openFileFds(): string[] {
  const out: string[] = [];
  for (const fd of fs.readdirSync("/proc/self/fd")) {
    try {
      const target = fs.readlinkSync(`/proc/self/fd/${fd}`);
      if (target.startsWith("/") && !target.startsWith("/proc/")) out.push(target);
    } catch {
      // closed while we looked (readdir's own fd, for one)
    }
  }
  return out.sort();
}

/** Waits until no more files and folders are open than in `before` (asynchronous closes settle). */
export async function expectNoFileFdLeak(before: string[]): Promise<void> {
  const leaked = () => {
    const now = openFileFds();
    return now.filter((f) => now.filter((g) => g === f).length > before.filter((g) => g === f).length);
  };
  await waitFor("file descriptors to close", () => leaked().length === 0 || undefined, 5000).catch(() => {
    throw new Error(`leaked file descriptors: ${[...new Set(leaked())].join(", ")}`);
  });
}

export function runDirEntries(): string[] {
  const dir = process.env.KRUNBOX_RUN_DIR!;
  return fs.existsSync(dir) ? fs.readdirSync(dir) : [];
}

/** A process run to its end without blocking this worker's event loop (what spawnSync would return). */
export function runAsync(
  command: string,
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(command, args, { cwd: options.cwd, env: options.env ?? process.env, timeout: options.timeoutMs ?? 120_000 });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d) => (stdout += d));
    p.stderr.on("data", (d) => (stderr += d));
    p.on("error", reject);
    p.on("close", (status) => resolve({ status, stdout, stderr }));
  });
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
  // Its own tools come from the system folders; `argv` runs with the caller's PATH.
  const script =
    'p=$PATH; PATH=/usr/sbin:/usr/bin:/sbin:/bin; mount --make-rprivate / && d=$(mktemp -d) && mount -t tmpfs none "$d" && ' +
    'cp -a /dev/null /dev/zero /dev/random /dev/urandom /dev/fd "$d"/ && mount --bind "$d" /dev && umount "$d" && rmdir "$d" && ' +
    'PATH=$p && exec "$0" "$@"';
  return ["/usr/bin/unshare", ["-m", "/bin/sh", "-c", script, ...argv]];
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

// A hostile guest root against the share server (test/share-server.test.ts,
// test/unprivileged.test.ts).

/** Guest shell lines that try each trick in `dir` and print "name=status". */
export function attackScript(dir: string): string {
  return [
    `cd ${dir}`,
    "mknod null c 1 3 2>/dev/null; echo mknod-char=$?",
    "mknod loop b 7 0 2>/dev/null; echo mknod-block=$?",
    "touch new; chmod 4755 new 2>/dev/null; echo chmod-suid=$?",
    "chmod 2755 new 2>/dev/null; echo chmod-sgid=$?",
    "chmod 4755 hostfile 2>/dev/null; echo chmod-suid-host-file=$?",
    "chown 0:0 new; chmod 6711 new 2>/dev/null; echo chmod-suid-root=$?",
    "echo more >> hostsuid; echo write-suid=$?",
    "mkfifo fifo; echo mkfifo=$?",
  ].join("; ");
}

/** The statuses an attackScript printed, by name. */
export function statuses(output: string): Record<string, number> {
  return Object.fromEntries([...output.matchAll(/^([a-z-]+)=(\d+)$/gm)].map((m) => [m[1], Number(m[2])]));
}

/** What a guest left in a host folder that it must not: device nodes, setuid/setgid files. */
export function privileged(dir: string): string[] {
  return fs.readdirSync(dir).filter((name) => {
    const st = fs.lstatSync(path.join(dir, name));
    return st.isCharacterDevice() || st.isBlockDevice() || (st.mode & 0o6000) !== 0;
  });
}

/**
 * A host folder as the guest finds it: a root-owned executable, and a
 * setuid one anybody may write (a write through the share must clear the bit).
 */
export function hostFolder(dir: string): string {
  fs.writeFileSync(path.join(dir, "hostfile"), "#!/bin/sh\n", { mode: 0o755 });
  fs.writeFileSync(path.join(dir, "hostsuid"), "#!/bin/sh\n");
  fs.chmodSync(path.join(dir, "hostsuid"), 0o4757);
  return dir;
}

export function expectSpecialFilesRefused(status: Record<string, number>): void {
  for (const attempt of ["mknod-char", "mknod-block", "chmod-suid", "chmod-sgid", "chmod-suid-host-file", "chmod-suid-root"])
    expect(status[attempt], attempt).toBeGreaterThan(0);
  // Writing a setuid file is allowed, and clears the bit (see privileged()).
  expect(status["write-suid"]).toBe(0);
  // FIFOs still land: harmless to the kernel; host-side file operations
  // must refuse anything but regular files and folders.
  expect(status.mkfifo).toBe(0);
}
