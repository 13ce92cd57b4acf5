// krunbox doctor: what this host has, which copy of each piece krunbox uses,
// and what to do about what is missing.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import { loadNative } from "../vm/native.js";
import { accelCachePath, addonPath, defaultImage, qemuPrograms, runtimePaths } from "../vm/runtime.js";

function firstLine(program: string, ...args: string[]): string {
  try {
    return execFileSync(program, args, { encoding: "utf8", timeout: 5000, stdio: ["ignore", "pipe", "pipe"] }).split("\n")[0].trim();
  } catch {
    return "version unknown";
  }
}

/** `boot`: `krunbox doctor --boot`, passed through for the boot check. */
export function doctor(_options: { boot?: boolean } = {}): number {
  let ok = true;
  // A failed check means no sandbox can start; a warning only costs speed or a feature.
  class Warning extends Error {}
  const check = (name: string, probe: () => string) => {
    try {
      console.log(`ok    ${name}: ${probe()}`);
    } catch (err) {
      if (err instanceof Warning) {
        console.log(`WARN  ${name}: ${err.message}`);
        return;
      }
      ok = false;
      console.log(`FAIL  ${name}: ${(err as Error).message}`);
    }
  };
  check("kvm", () => {
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
  });
  check("qemu backend", () => {
    const p = qemuPrograms();
    return [
      `${p.qemuPath} (${firstLine(p.qemuPath, "--version")})`,
      `${p.virtiofsdPath} (${firstLine(p.virtiofsdPath, "--version")})`,
      `${p.vsockDaemonPath} (${firstLine(p.vsockDaemonPath, "--version")})`,
    ].join(", ");
  });
  check("addon", () => `${addonPath()} (krunbox ${loadNative().version})`);
  check("runner", () => {
    const { runner } = runtimePaths();
    return `${runner} (${firstLine(runner, "--version")})`;
  });
  check("guest", () => {
    const p = runtimePaths();
    const v = JSON.parse(fs.readFileSync(`${p.dir}/versions.json`, "utf8"));
    return `kernel ${v.kernel.release} at ${p.kernel}, agent ${v.krunbox} in ${p.initrd}`;
  });
  check("default image", () => {
    const dir = defaultImage();
    if (!fs.existsSync(`${dir}/bin/busybox`)) throw new Error(`${dir} has no busybox: remove it and retry`);
    return dir;
  });
  check("libkrun backend", () => {
    const candidates = [process.env.KRUNBOX_LIBKRUN, "/usr/lib64/libkrun.so.1", "/usr/lib/x86_64-linux-gnu/libkrun.so.1", "/usr/lib/libkrun.so.1", "/usr/local/lib/libkrun.so.1"];
    const found = candidates.find((f) => f && fs.existsSync(f));
    if (!found) return "not installed (optional; the qemu backend is used). Fedora: dnf install libkrun";
    return found;
  });
  console.log(`host: ${os.release()}, ${os.cpus().length} cores`);
  return ok ? 0 : 1;
}
