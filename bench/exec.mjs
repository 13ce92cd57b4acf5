// Where a warm exec's time goes, all measured in one run on one sandbox:
// the in-guest floor (a guest shell spawning the same binary), the
// protocol's round trip on a kept connection, an exec on a new connection
// (what every exec paid before connections were kept) and on a kept one.
// The binary is busybox copied to the guest's tmpfs, so that file-system
// caching of the image root does not enter the figures.
//   node bench/exec.mjs [execs=300]
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Sandbox } from "../dist/index.js";
import { ExecChannel } from "../dist/sandbox/channel.js";
import { SandboxProcess } from "../dist/sandbox/process.js";
import { fmt, stats } from "./common.mjs";

const execs = Number(process.argv[2] ?? 300);
const SPAWNS = 200;

async function timed(fn, n = execs) {
  for (let i = 0; i < Math.min(20, n); i++) await fn();
  const samples = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await fn();
    samples.push(performance.now() - t);
  }
  return stats(samples);
}

const before = new Set(fs.readdirSync(os.tmpdir()));
const sb = await Sandbox.create();
// The sandbox's exec socket, for the protocol-level figures (internal API).
const socketPath = path.join(os.tmpdir(), fs.readdirSync(os.tmpdir()).find((f) => f.startsWith("krunbox-sb-") && !before.has(f)), "agent.sock");
await sb.exec("cp", ["/bin/busybox", "/tmp/true"]);

// A guest shell spawning /tmp/true, less the same loop without it.
const loop = (body) => `i=0; while [ $i -lt ${SPAWNS} ]; do ${body}; i=$((i+1)); done`;
const spawnSamples = [];
for (let k = 0; k < 7; k++) {
  const t0 = performance.now();
  await sb.exec("sh", ["-c", loop("/tmp/true")]);
  const t1 = performance.now();
  await sb.exec("sh", ["-c", loop(":")]);
  spawnSamples.push((t1 - t0 - (performance.now() - t1)) / SPAWNS);
}
const inGuest = stats(spawnSamples);

const run = (channel, req) => new SandboxProcess(channel, { env: [], cwd: "/", user: "", timeoutMs: 0, stdin: false, ...req }, () => undefined, async () => new Error("lost")).exited;
const kept = new ExecChannel(socketPath);
const rtt = await timed(() => run(kept, { argv: [], checkOnly: true }));
const fresh = await timed(async () => {
  const channel = new ExecChannel(socketPath);
  await run(channel, { argv: ["/tmp/true"] });
  channel.close();
});
kept.close();
const warm = await timed(() => sb.exec("/tmp/true"));
const image = await timed(() => sb.exec("true"));
await sb.stop();

console.log(`exec channel figures, accel=${sb.accel}, ${os.cpus().length} host cores`);
console.log(`                                              median      min      max  (ms)`);
console.log(`in-guest spawn of /tmp/true (shell, floor)  ${fmt(inGuest.median, 2)} ${fmt(inGuest.min, 2)} ${fmt(inGuest.max, 2)}   (${SPAWNS} x 7)`);
console.log(`protocol round trip, kept connection        ${fmt(rtt.median, 2)} ${fmt(rtt.min, 2)} ${fmt(rtt.max, 2)}   (checkOnly EXEC -> EXIT)`);
console.log(`exec /tmp/true, new connection each         ${fmt(fresh.median, 2)} ${fmt(fresh.min, 2)} ${fmt(fresh.max, 2)}`);
console.log(`sb.exec("/tmp/true"), kept connection       ${fmt(warm.median, 2)} ${fmt(warm.min, 2)} ${fmt(warm.max, 2)}`);
console.log(`sb.exec("true") from the image root         ${fmt(image.median, 2)} ${fmt(image.min, 2)} ${fmt(image.max, 2)}`);
console.log(`warm exec - floor: ${(warm.median - inGuest.median).toFixed(2)} ms (goal: at most 2 ms); connection set-up saved: ${(fresh.median - warm.median).toFixed(2)} ms`);
