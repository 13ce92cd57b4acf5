// Boot -> exit of `/bin/true` through krunbox, against bare QEMU booting the
// same kernel and initramfs to a trivial init that powers off at once.
// Prints median/min/max (ms) of each and krunbox's overhead as a ratio.
//   node bench/boot.mjs [runs=10]
import os from "node:os";
import { bootVm } from "../dist/index.js";
import { bareQemuBoots, fmt, stats } from "./common.mjs";

const runs = Number(process.argv[2] ?? 10);
const krunbox = [];
let accel;
for (let i = 0; i < runs; i++) {
  const t = performance.now();
  const r = await bootVm({ command: ["/bin/true"] });
  krunbox.push(performance.now() - t);
  if (r.exitCode !== 0) throw new Error(`/bin/true exited ${r.exitCode}`);
  accel = r.accel;
}
const k = stats(krunbox);
const b = stats(bareQemuBoots(runs, accel));
console.log(`boot -> exit of /bin/true, ${runs} runs each, accel=${accel}, ${os.cpus().length} host cores`);
console.log(`                        median      min      max  (ms)`);
console.log(`krunbox bootVm        ${fmt(k.median)} ${fmt(k.min)} ${fmt(k.max)}`);
console.log(`bare QEMU             ${fmt(b.median)} ${fmt(b.min)} ${fmt(b.max)}`);
console.log(`overhead (median ratio krunbox / bare): ${(k.median / b.median).toFixed(2)}x`);
