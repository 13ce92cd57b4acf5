// Boot -> exit of `/bin/true` through krunbox, against bare QEMU booting the
// same kernel and initramfs to a trivial init that powers off at once.
// Prints median/min/max (ms) of each and krunbox's overhead as a ratio.
//   node bench/boot.mjs [runs=10]
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { bootVm } from "../dist/index.js";
import { qemuPrograms, runtimePaths } from "../dist/runtime.js";

const runs = Number(process.argv[2] ?? 10);

function stats(samples) {
  const s = [...samples].sort((a, b) => a - b);
  const median = s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  return { median, min: s[0], max: s[s.length - 1] };
}
const fmt = (x) => x.toFixed(0).padStart(6);

const krunbox = [];
let accel;
for (let i = 0; i < runs; i++) {
  const t = performance.now();
  const r = await bootVm({ command: ["/bin/true"] });
  krunbox.push(performance.now() - t);
  if (r.exitCode !== 0) throw new Error(`/bin/true exited ${r.exitCode}`);
  accel = r.accel;
}

// Bare: our initramfs plus a second cpio archive (the kernel unpacks both)
// holding busybox and an init that powers off, nothing else.
const { kernel, initrd } = runtimePaths();
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
  const bare = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    const r = spawnSync(qemuPath, args, { stdio: "ignore", timeout: 60_000 });
    bare.push(performance.now() - t);
    if (r.status !== 0) throw new Error(`bare QEMU failed: ${r.status} ${r.signal}`);
  }

  const k = stats(krunbox);
  const b = stats(bare);
  console.log(`boot -> exit of /bin/true, ${runs} runs each, accel=${accel}, ${os.cpus().length} host cores`);
  console.log(`                      median    min    max  (ms)`);
  console.log(`krunbox bootVm        ${fmt(k.median)} ${fmt(k.min)} ${fmt(k.max)}`);
  console.log(`bare QEMU             ${fmt(b.median)} ${fmt(b.min)} ${fmt(b.max)}`);
  console.log(`overhead (median ratio krunbox / bare): ${(k.median / b.median).toFixed(2)}x`);
} finally {
  fs.rmSync(tmp, { recursive: true, force: true });
}
