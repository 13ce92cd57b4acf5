// krunbox doctor: checks every piece a sandbox needs, says which copy of
// each krunbox uses (bundled or the system's: path and version), and what
// to do about what is missing. Exits 0 whenever a sandbox can start.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import { Sandbox } from "../sandbox/sandbox.js";
import { loadNative } from "../vm/native.js";
import { accelCachePath, addonPath, defaultImage, hostPrograms, runtimePaths, type HostProgram } from "../vm/runtime.js";

export type CheckStatus = "ok" | "warn" | "fail";

export interface CheckResult {
  name: string;
  /** "fail": no sandbox can start; "warn": sandboxes start, slower or with less. */
  status: CheckStatus;
  detail: string;
}

export interface DoctorOptions {
  /** Also boot a sandbox and run a command in it. */
  boot?: boolean;
  /** Where each result line goes (default: stdout). */
  print?: (line: string) => void;
}

/** A check whose finding costs speed or a feature, not the sandbox. */
class Warning extends Error {}

function firstLine(program: string, ...args: string[]): string {
  try {
    return execFileSync(program, args, { encoding: "utf8", timeout: 10_000, stdio: ["ignore", "pipe", "pipe"] }).split("\n")[0].trim();
  } catch {
    return "version unknown";
  }
}

function runtimeFrom(): string {
  return process.env.KRUNBOX_RUNTIME_DIR ? "bundled, from KRUNBOX_RUNTIME_DIR" : "bundled";
}

function describe(p: HostProgram): string {
  const from = p.from === "bundled" ? runtimeFrom() : p.from === "PATH" ? "system, on PATH" : `system, from ${p.from}`;
  return `${p.path} (${from}): ${firstLine(p.path, "--version")}`;
}

function versions(): { krunbox: string; kernel: { release: string } } {
  return JSON.parse(fs.readFileSync(`${runtimePaths().dir}/versions.json`, "utf8"));
}

function checkQemu(): string {
  const { qemu } = hostPrograms();
  // What krunbox's QEMU command line needs (tested with QEMU 7.2).
  const missing = [
    ["-machine", "microvm"],
    ["-device", "vhost-user-fs-device"],
    ["-device", "vhost-user-vsock-device"],
  ]
    .filter(([flag, name]) => !execFileSync(qemu.path, [flag, "help"], { encoding: "utf8", timeout: 10_000 }).includes(name))
    .map(([, name]) => name);
  if (missing.length)
    throw new Error(`${qemu.path} lacks ${missing.join(", ")}: krunbox needs a QEMU built with them (set KRUNBOX_QEMU to another build)`);
  return describe(qemu);
}

function checkKvm(): string {
  try {
    fs.accessSync("/dev/kvm", fs.constants.R_OK | fs.constants.W_OK);
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code === "ENOENT" ? "/dev/kvm does not exist" : "/dev/kvm is not accessible to you";
    throw new Warning(
      `${why}, so QEMU runs guests under TCG (software emulation: boots take seconds, programs run several times slower). ` +
        "For KVM: enable virtualization in the firmware (or nested virtualization in a VM), load kvm_intel or kvm_amd, " +
        "and add yourself to the kvm group (sudo usermod -aG kvm $USER, then log in again)",
    );
  }
  const pvm = fs.existsSync("/sys/module/kvm_pvm");
  const cached = fs.existsSync(accelCachePath()) ? fs.readFileSync(accelCachePath(), "utf8").trim() : "";
  if (pvm || cached === "tcg")
    throw new Warning("/dev/kvm is usable but cannot run stock guest kernels here" + (pvm ? " (PVM host)" : "") + "; QEMU uses TCG (software emulation)");
  return "/dev/kvm is usable";
}

function checkLibkrun(): string {
  const candidates = [process.env.KRUNBOX_LIBKRUN, "/usr/lib64/libkrun.so.1", "/usr/lib/x86_64-linux-gnu/libkrun.so.1", "/usr/lib/libkrun.so.1", "/usr/local/lib/libkrun.so.1"];
  return candidates.find((f) => f && fs.existsSync(f)) ?? "not installed (optional: the qemu backend is used). Fedora: dnf install libkrun";
}

async function checkBoot(): Promise<string> {
  const started = performance.now();
  const sb = await Sandbox.create();
  try {
    const r = await sb.exec("uname", ["-r"], { timeoutMs: 30_000 });
    if (r.exitCode !== 0) throw new Error(`uname -r in the sandbox exited with ${r.exitCode}: ${r.stderr.trim()}`);
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    return `a sandbox started and ran \`uname -r\` (${r.stdout.trim()}) in ${seconds} s, accelerator ${sb.accel}`;
  } finally {
    await sb.stop();
  }
}

/** Every check, in order; `boot` adds a real sandbox boot. */
export async function runChecks(options: { boot?: boolean } = {}): Promise<CheckResult[]> {
  const checks: [string, () => string | Promise<string>][] = [
    ["qemu", checkQemu],
    ["virtiofsd", () => describe(hostPrograms().virtiofsd)],
    ["vsock daemon", () => describe(hostPrograms().vsockDaemon)],
    ["kernel", () => `${runtimePaths().kernel} (${runtimeFrom()}): Linux ${versions().kernel.release}`],
    ["initramfs", () => `${runtimePaths().initrd} (${runtimeFrom()}): agent of krunbox ${versions().krunbox}`],
    ["addon", () => `${addonPath()} (krunbox ${loadNative().version})`],
    ["runner", () => `${runtimePaths().runner} (${firstLine(runtimePaths().runner, "--version")})`],
    [
      "default image",
      () => {
        const dir = defaultImage();
        if (!fs.existsSync(`${dir}/bin/busybox`)) throw new Error(`${dir} has no busybox: remove it and retry`);
        return dir;
      },
    ],
    ["kvm", checkKvm],
    ["libkrun", checkLibkrun],
  ];
  const results: CheckResult[] = [];
  for (const [name, check] of checks) results.push(await result(name, check));
  // Booting is only worth trying when nothing failed.
  if (options.boot) {
    results.push(
      results.some((r) => r.status === "fail")
        ? { name: "boot", status: "fail", detail: "skipped: fix the failures above first" }
        : await result("boot", checkBoot),
    );
  }
  return results;
}

async function result(name: string, check: () => string | Promise<string>): Promise<CheckResult> {
  try {
    return { name, status: "ok", detail: await check() };
  } catch (err) {
    return { name, status: err instanceof Warning ? "warn" : "fail", detail: (err as Error).message };
  }
}

/** Prints every check; resolves with the exit status: 0 when a sandbox can start. */
export async function doctor(options: DoctorOptions = {}): Promise<number> {
  const print = options.print ?? ((line: string) => console.log(line));
  const results = await runChecks(options);
  for (const r of results) print(`${{ ok: "ok   ", warn: "WARN ", fail: "FAIL " }[r.status]} ${r.name}: ${r.detail}`);
  print(`host: Linux ${os.release()}, ${os.cpus().length} cores`);
  return results.some((r) => r.status === "fail") ? 1 : 0;
}
