// Through a bind volume (virtio-fs) against the same work on the host
// folder: sequential write and read of a 256 MiB file, and create + stat of
// 5,000 small files. Prints seconds and guest/host ratios. Under TCG the
// guest side also pays for emulated CPU, so the ratios are upper bounds.
//   node bench/volumes.mjs
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Sandbox } from "../dist/index.js";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "krunbox-bench-vol-"));
const steps = {
  "write 256 MiB": (d) => `dd if=/dev/zero of=${d}/big bs=1M count=256 conv=fsync 2>/dev/null`,
  "read 256 MiB": (d) => `dd if=${d}/big of=/dev/null bs=1M 2>/dev/null`,
  "create+stat 5000 files": (d) =>
    `mkdir -p ${d}/small && i=0; while [ $i -lt 5000 ]; do : > ${d}/small/$i; i=$((i+1)); done; ls -l ${d}/small > /dev/null`,
};
const time = async (fn) => {
  const t = performance.now();
  await fn();
  return (performance.now() - t) / 1000;
};

try {
  const host = {};
  for (const [name, cmd] of Object.entries(steps)) host[name] = await time(() => execFileSync("sh", ["-c", cmd(dir)]));
  fs.rmSync(path.join(dir, "small"), { recursive: true });
  fs.rmSync(path.join(dir, "big"));

  const sb = await Sandbox.create({ memoryMiB: 1024, volumes: [{ type: "bind", source: dir, target: "/w" }] });
  const guest = {};
  try {
    for (const [name, cmd] of Object.entries(steps)) {
      // Reads come from the host's page cache on both sides, not the guest's.
      if (name.startsWith("read")) await sb.exec("sh", ["-c", "sync; echo 3 > /proc/sys/vm/drop_caches"]);
      guest[name] = await time(async () => {
        const r = await sb.exec("sh", ["-c", cmd("/w")]);
        if (r.exitCode !== 0) throw new Error(`${name}: ${r.stderr}`);
      });
    }
  } finally {
    await sb.stop();
  }
  console.log(`virtio-fs bind volume vs host folder, accel=${sb.accel}, ${os.cpus().length} host cores`);
  console.log(`${"".padEnd(24)}   guest s    host s   guest/host`);
  for (const name of Object.keys(steps))
    console.log(`${name.padEnd(24)} ${guest[name].toFixed(2).padStart(9)} ${host[name].toFixed(2).padStart(9)} ${(guest[name] / host[name]).toFixed(1).padStart(11)}x`);
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
