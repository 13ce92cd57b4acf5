// A guest that prints to its console forever, past consoleLimitBytes: what
// that costs the VM's runner (CPU share and wakeups) once the cap is reached.
//   node bench/console-flood.mjs [seconds=10]
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { VirtualMachine } from "../dist/index.js";

const seconds = Number(process.argv[2] ?? 10);
const consolePath = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "krunbox-bench-")), "console.log");
const vm = VirtualMachine.start({
  command: ["/bin/sh", "-c", "while :; do echo flood-flood-flood-flood-flood-flood-flood-flood-flood; done"],
  consolePath,
  consoleLimitBytes: 4096,
});
await vm.ready;
while (!fs.readFileSync(consolePath, "utf8").includes("bytes dropped]")) await new Promise((r) => setTimeout(r, 100));
// The runner's CPU time (utime + stime, in clock ticks) and its wakeups.
const sample = () => {
  const stat = fs.readFileSync(`/proc/${vm.pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const status = fs.readFileSync(`/proc/${vm.pid}/status`, "utf8");
  return {
    ticks: Number(fields[11]) + Number(fields[12]),
    wakeups: Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(status)[1]),
    at: performance.now(),
  };
};
const a = sample();
await new Promise((r) => setTimeout(r, seconds * 1000));
const b = sample();
const elapsed = (b.at - a.at) / 1000;
// /proc counts CPU time in clock ticks, 100 a second on Linux.
console.log(`console flood past a 4 KiB cap, ${elapsed.toFixed(1)} s, accel=${vm.accel}, ${os.cpus().length} host cores`);
console.log(`runner CPU: ${((b.ticks - a.ticks) / elapsed).toFixed(1)}% of a core; wakeups: ${Math.round((b.wakeups - a.wakeups) / elapsed)} a second`);
console.log(`console file: ${fs.statSync(consolePath).size} bytes`);
await vm.stop(1000);
fs.rmSync(path.dirname(consolePath), { recursive: true, force: true });
