// Shared by the benchmarks: summary statistics and a bare-QEMU baseline.
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Sandbox } from "../dist/index.js";
import { bootKernel, qemuPrograms, runtimePaths } from "../dist/vm/runtime.js";

export function stats(samples) {
  const s = [...samples].sort((a, b) => a - b);
  const median = s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  return { median, min: s[0], max: s[s.length - 1] };
}

/**
 * `runs` cold starts: Sandbox.create -> first exec result (the stop is not
 * timed). Returns the samples (ms) and the accelerator used.
 */
export async function coldStarts(runs) {
  const samples = [];
  let accel;
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    const sb = await Sandbox.create();
    await sb.exec("true");
    samples.push(performance.now() - t);
    accel = sb.accel;
    await sb.stop();
  }
  return { samples, accel };
}

export const fmt = (x, digits = 0) => x.toFixed(digits).padStart(8);

/**
 * Times bare QEMU booting krunbox's kernel and initramfs to a trivial init
 * that powers off at once: our initramfs plus a second cpio archive (the
 * kernel unpacks both) holding busybox and that init, nothing else.
 * Returns one wall-clock sample (ms) per run.
 */
export function bareQemuBoots(runs, accel) {
  const { initrd } = runtimePaths();
  const kernel = bootKernel();
  const { qemuPath } = qemuPrograms();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "krunbox-bench-"));
  try {
    fs.mkdirSync(path.join(tmp, "extra/bin"), { recursive: true });
    fs.copyFileSync("/bin/busybox", path.join(tmp, "extra/bin/busybox"));
    fs.writeFileSync(path.join(tmp, "extra/bare-init"), "#!/bin/busybox sh\n/bin/busybox reboot -f\n", { mode: 0o755 });
    const extra = execFileSync("cpio", ["--quiet", "-o", "-H", "newc", "-R", "0:0"], {
      cwd: path.join(tmp, "extra"),
      input: "bin\nbin/busybox\nbare-init\n",
      maxBuffer: 64 << 20,
    });
    const bareInitrd = path.join(tmp, "initrd");
    fs.writeFileSync(bareInitrd, Buffer.concat([fs.readFileSync(initrd), extra]));
    const mhz = Number(/cpu MHz\s*:\s*([\d.]+)/.exec(fs.readFileSync("/proc/cpuinfo", "utf8"))?.[1]);
    const tsc = accel === "tcg" && mhz ? ` tsc_early_khz=${Math.round(mhz * 1000)} tsc=reliable` : "";
    const args = [
      "-M", `microvm,accel=${accel}`, ...(accel === "kvm" ? ["-cpu", "host"] : []),
      "-m", "256M", "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
      "-kernel", kernel, "-initrd", bareInitrd,
      "-append", `console=ttyS0 quiet panic=-1 reboot=t rdinit=/bare-init${tsc}`,
      "-serial", `file:${path.join(tmp, "console")}`,
    ];
    const samples = [];
    for (let i = 0; i < runs; i++) {
      const t = performance.now();
      const r = spawnSync(qemuPath, args, { stdio: "ignore", timeout: 60_000 });
      samples.push(performance.now() - t);
      if (r.status !== 0) throw new Error(`bare QEMU failed: ${r.status} ${r.signal}`);
    }
    return samples;
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
