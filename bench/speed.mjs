// Issue 15's table in one run: each figure beside its floor, as a ratio.
//   node bench/speed.mjs [runs=5]
// Rows: busybox `true` from the image root vs from guest tmpfs; warm
// exec round trip vs in-guest spawn + vsock round trip; warm python3 from
// the debootstrapped test image vs a tmpfs copy; second sequential read of
// 128 MiB on a bind volume vs guest tmpfs; cold start vs bare QEMU boot;
// acquire() from a warm pool. Guest timings are taken from the host as the
// difference between two execs that differ only in the work measured.
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { Sandbox, VirtualMachine } from "../dist/index.js";
import { packageRoot } from "../dist/vm/runtime.js";
import { bareQemuBoots, coldStarts, stats } from "./common.mjs";

const runs = Number(process.argv[2] ?? 5);
const median = (xs) => stats(xs).median;
const rows = [];
const row = (figure, value, floor, unit, goal) => {
  rows.push({ figure, value, floor, unit, goal });
  console.error(`measured: ${figure}`);
};

async function timed(fn) {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

async function ok(sb, cmd, args, options) {
  const r = await sb.exec(cmd, args, options);
  if (r.exitCode !== 0) throw new Error(`${cmd} ${args.join(" ")} exited ${r.exitCode}: ${r.stderr}`);
  return r;
}

// ms a run of `bin true` in a guest shell loop of 100 (minus the loop
// alone), for each of `bins`, their samples interleaved.
async function perTrue(sb, bins) {
  const loop = (bin, n) => `i=0; while [ $i -lt ${n} ]; do ${bin} true; i=$((i+1)); done`;
  const samples = bins.map(() => []);
  for (let k = 0; k < runs; k++) {
    for (const [i, bin] of bins.entries()) {
      const full = await timed(() => ok(sb, "/tmp/busybox", ["sh", "-c", loop(bin, 100)]));
      const empty = await timed(() => ok(sb, "/tmp/busybox", ["sh", "-c", loop(bin, 0)]));
      samples[i].push((full - empty) / 100);
    }
  }
  return samples.map(median);
}

// One echo of `payload` on `sock` (resolves false if none comes within `ms`).
function echoOnce(sock, payload, ms) {
  return new Promise((resolve) => {
    let got = 0;
    const done = (ok) => {
      clearTimeout(timer);
      sock.off("data", onData);
      resolve(ok);
    };
    const onData = (d) => {
      got += d.length;
      if (got >= payload.length) done(true);
    };
    const timer = setTimeout(() => done(false), ms);
    sock.on("data", onData);
    sock.write(payload);
  });
}

// 64-byte round trips over vsock to the agent's echo tool in a VM.
async function vsockRoundTrip() {
  const socketPath = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "krunbox-bench-")), "echo.sock");
  const vm = VirtualMachine.start({ command: ["/sbin/krunbox-agent", "vsock-echo", "5000"], vsock: [{ port: 5000, socketPath, listen: true }] });
  const payload = Buffer.alloc(64, 7);
  try {
    await vm.ready;
    // The echo tool starts just after the agent is ready: until it listens, connections hang.
    let sock;
    for (let attempt = 0; attempt < 100 && !sock; attempt++) {
      const s = net.connect(socketPath);
      await new Promise((resolve) => s.once("connect", resolve).once("error", resolve));
      if (await echoOnce(s, payload, 500)) sock = s;
      else s.destroy();
    }
    if (!sock) throw new Error("the guest's vsock echo never answered");
    const samples = [];
    for (let i = 0; i < 500; i++) samples.push(await timed(() => echoOnce(sock, payload, 5000)));
    sock.destroy();
    return median(samples);
  } finally {
    await vm.stop(0);
    fs.rmSync(path.dirname(socketPath), { recursive: true, force: true });
  }
}

// --- rows 1 and 2: exec from the image root, the exec round trip
{
  const sb = await Sandbox.create();
  await ok(sb, "cp", ["/bin/busybox", "/tmp/busybox"]);
  const [fromRoot, fromTmpfs] = await perTrue(sb, ["/bin/busybox", "/tmp/busybox"]);
  row("busybox `true` from the image root (100x in a guest shell)", fromRoot, fromTmpfs, "ms", "<= 1.5x");
  const warm = [];
  const tmpfsExec = [];
  for (let i = 0; i < 300; i++) {
    warm.push(await timed(() => sb.exec("true")));
    tmpfsExec.push(await timed(() => sb.exec("/tmp/busybox", ["true"])));
  }
  await sb.stop();
  const rtt = await vsockRoundTrip();
  row('warm sb.exec("true") round trip', median(warm.slice(20)), fromTmpfs + rtt, "ms", "<= floor + 2 ms");
  row('  ...of a binary on guest tmpfs', median(tmpfsExec.slice(20)), fromTmpfs + rtt, "ms", "");
  console.error(`vsock 64-byte round trip ${rtt.toFixed(2)} ms, in-guest spawn ${fromTmpfs.toFixed(2)} ms`);
}

// --- row 3: python3 from the debootstrapped test image
const pythonRoot = path.join(packageRoot, "deps/debian/python-root");
if (fs.existsSync(pythonRoot)) {
  const sb = await Sandbox.create({ image: { dir: pythonRoot } });
  const py = ["-c", "print(1+1)"];
  await ok(sb, "python3", py);
  await ok(sb, "sh", ["-c", "mkdir -p /tmp/py/bin /tmp/py/lib && cp -a /usr/bin/python3.* /tmp/py/bin/ && cp -a /usr/lib/python3.* /tmp/py/lib/"]);
  const bin = (await ok(sb, "sh", ["-c", "ls /tmp/py/bin | head -1"])).stdout.trim();
  const copy = ["env", ["PYTHONHOME=/tmp/py", `/tmp/py/bin/${bin}`, ...py]];
  await ok(sb, ...copy);
  const image = [], tmpfs = [];
  for (let k = 0; k < runs; k++) {
    image.push(await timed(() => ok(sb, "python3", py)));
    tmpfs.push(await timed(() => ok(sb, ...copy)));
  }
  await sb.stop();
  row("python3 -c 'print(1+1)' warm, debootstrapped image", median(image), median(tmpfs), "ms", "<= 1.2x");
} else {
  console.error(`no ${pythonRoot} (run npm run setup): python row skipped`);
}

// --- row 4: second sequential read of 128 MiB on a bind volume
{
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "krunbox-bench-"));
  fs.writeFileSync(path.join(dir, "big"), Buffer.alloc(128 << 20, 1));
  const sb = await Sandbox.create({ memoryMiB: 1024, volumes: [`${dir}:/vol`] });
  await ok(sb, "cp", ["/bin/busybox", "/tmp/busybox"]);
  const mibs = async (file) => {
    const exec = await timed(() => ok(sb, "/tmp/busybox", ["true"]));
    const read = await timed(() => ok(sb, "/tmp/busybox", ["dd", `if=${file}`, "of=/dev/null", "bs=1M"]));
    return 128 / ((read - exec) / 1000);
  };
  const first = await mibs("/vol/big"); // before /tmp/big exists: the guest has read nothing of it
  const volume = [], tmpfs = [];
  await ok(sb, "cp", ["/vol/big", "/tmp/big"]);
  for (let k = 0; k < runs; k++) {
    volume.push(await mibs("/vol/big"));
    tmpfs.push(await mibs("/tmp/big"));
  }
  await sb.stop();
  fs.rmSync(dir, { recursive: true, force: true });
  row("sequential read of 128 MiB on a bind volume, second read", median(volume), median(tmpfs), "MiB/s", ">= 50%");
  console.error(`volume first read ${first.toFixed(0)} MiB/s`);
}

// --- row 5: cold start
{
  const { samples, accel } = await coldStarts(runs);
  row("cold start: Sandbox.create -> first exec result", median(samples), median(bareQemuBoots(runs, accel)), "ms", "<= 1.15x");
}

// --- row 6: a ready sandbox from a warm pool
if (typeof Sandbox.pool === "function") {
  const pool = Sandbox.pool({ size: 1 });
  const acquire = [];
  for (let i = 0; i < runs * 2; i++) {
    while (pool.idle < 1) await new Promise((r) => setTimeout(r, 50));
    const t = performance.now();
    const sb = await pool.acquire();
    acquire.push(performance.now() - t);
    await sb.stop();
  }
  await pool.close();
  row("getting a ready sandbox: pool.acquire()", median(acquire), undefined, "ms", "<= 50 ms");
}

console.log(`krunbox speed figures: ${os.cpus().length} host cores, median of ${runs} runs unless noted`);
console.log(`${"figure".padEnd(62)} ${"value".padStart(9)} ${"floor".padStart(9)}  ratio   goal`);
for (const r of rows) {
  const ratio = r.floor === undefined ? "" : r.unit === "MiB/s" ? `${((100 * r.value) / r.floor).toFixed(0)}%` : `${(r.value / r.floor).toFixed(2)}x`;
  const fmt = (x) => (x === undefined ? "-" : x.toFixed(x < 20 ? 2 : 0)).padStart(9);
  console.log(`${r.figure.padEnd(62)} ${fmt(r.value)} ${fmt(r.floor)}  ${ratio.padEnd(7)} ${r.goal}  (${r.unit})`);
}
