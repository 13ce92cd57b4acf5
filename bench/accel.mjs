// What software emulation costs: per accelerator this host can use (TCG
// always, KVM when it boots the guest), the cold start (Sandbox.create ->
// first exec result) and a CPU-bound command in the guest against the same
// command on the host (busybox sha256sum of 64 MiB of zeros, single core).
//   node bench/accel.mjs [runs=5]
import { execFileSync } from "node:child_process";
import { Sandbox } from "../dist/index.js";
import { fmt, stats } from "./common.mjs";

const runs = Number(process.argv[2] ?? 5);
const cpuBound = "dd if=/dev/zero bs=1M count=64 2>/dev/null | busybox sha256sum";

function hostCpuBound() {
  const t = performance.now();
  execFileSync("sh", ["-c", cpuBound]);
  return performance.now() - t;
}

async function measure(accel) {
  const cold = [];
  const cpu = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    const sb = await Sandbox.create({ accel });
    try {
      await sb.exec("true");
      cold.push(performance.now() - t);
      const c = performance.now();
      await sb.exec("sh", ["-c", cpuBound]); // an exec round trip is tens of ms: noise here
      cpu.push(performance.now() - c);
    } finally {
      await sb.stop();
    }
  }
  return { cold: stats(cold), cpu: stats(cpu) };
}

const host = stats(Array.from({ length: runs }, hostCpuBound));
console.log(`host: sha256 of 64 MiB  ${fmt(host.median)} ms median`);
for (const accel of ["tcg", "kvm"]) {
  let m;
  try {
    m = await measure(accel);
  } catch (err) {
    console.log(`${accel}: not usable on this host (${err.code ?? err.message})`);
    continue;
  }
  console.log(
    `${accel}: cold start ${fmt(m.cold.median)} ms median (${m.cold.min.toFixed(0)}-${m.cold.max.toFixed(0)}), ` +
      `sha256 of 64 MiB ${fmt(m.cpu.median)} ms median = ${(m.cpu.median / host.median).toFixed(1)}x the host`,
  );
}
