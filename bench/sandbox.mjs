// Sandbox figures: cold start (Sandbox.create -> first exec result) against
// a bare QEMU boot of the same kernel and initramfs, warm exec round trip
// (from the image root, and of a tmpfs binary against a guest shell
// spawning it), and sandboxes started per minute with 3 in parallel.
//   node bench/sandbox.mjs [coldRuns=10] [warmExecs=500] [throughputSeconds=30]
import os from "node:os";
import { Sandbox } from "../dist/index.js";
import { bareQemuBoots, coldStarts, fmt, stats } from "./common.mjs";

const coldRuns = Number(process.argv[2] ?? 10);
const warmExecs = Number(process.argv[3] ?? 500);
const seconds = Number(process.argv[4] ?? 30);

const { samples: cold, accel } = await coldStarts(coldRuns);
const c = stats(cold);
const b = stats(bareQemuBoots(coldRuns, accel));

const sb = await Sandbox.create();
const warmOf = async (command) => {
  const samples = [];
  for (let i = 0; i < warmExecs; i++) {
    const t = performance.now();
    await sb.exec(command);
    samples.push(performance.now() - t);
  }
  return stats(samples);
};
const w = await warmOf("true");
// The same binary from the guest's tmpfs (no image-root caching in it),
// against its floor: a guest shell spawning it (bench/exec.mjs has more).
await sb.exec("cp", ["/bin/busybox", "/tmp/true"]);
const wt = await warmOf("/tmp/true");
const loop = (body) => ["sh", ["-c", `i=0; while [ $i -lt 200 ]; do ${body}; i=$((i+1)); done`]];
const spawns = [];
for (let k = 0; k < 7; k++) {
  const t0 = performance.now();
  await sb.exec(...loop("/tmp/true"));
  const t1 = performance.now();
  await sb.exec(...loop(":"));
  spawns.push((t1 - t0 - (performance.now() - t1)) / 200);
}
const floor = stats(spawns);
await sb.stop();

let started = 0;
const end = performance.now() + seconds * 1000;
await Promise.all(
  [0, 1, 2].map(async () => {
    while (performance.now() < end) {
      const box = await Sandbox.create();
      await box.exec("true");
      await box.stop();
      started++;
    }
  }),
);
const perMinute = (started * 60) / ((performance.now() - end + seconds * 1000) / 1000);

console.log(`sandbox figures, accel=${accel}, ${os.cpus().length} host cores`);
console.log(`                                  median      min      max  (ms)`);
console.log(`cold start (create -> 1st exec) ${fmt(c.median)} ${fmt(c.min)} ${fmt(c.max)}   (${coldRuns} runs)`);
console.log(`bare QEMU boot                  ${fmt(b.median)} ${fmt(b.min)} ${fmt(b.max)}`);
console.log(`cold start / bare boot: ${(c.median / b.median).toFixed(2)}x`);
console.log(`warm exec round trip (true)     ${fmt(w.median, 2)} ${fmt(w.min, 2)} ${fmt(w.max, 2)}   (${warmExecs} execs)`);
console.log(`warm exec of /tmp/true (tmpfs)  ${fmt(wt.median, 2)} ${fmt(wt.min, 2)} ${fmt(wt.max, 2)}   (${warmExecs} execs)`);
console.log(`in-guest spawn of /tmp/true     ${fmt(floor.median, 2)} ${fmt(floor.min, 2)} ${fmt(floor.max, 2)}   (a guest shell, 200 x 7)`);
console.log(`warm tmpfs exec - in-guest spawn: ${(wt.median - floor.median).toFixed(2)} ms`);
console.log(`sandboxes started per minute, 3 in parallel: ${perMinute.toFixed(1)} (${started} in ${seconds} s)`);
