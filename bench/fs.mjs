// sb.fs figures: writeFile/readFile of 64 MiB against the same transfer
// through a bind volume (the host writes the folder, the guest copies from
// it, and back); readdir of 10,000 entries; watch latency from a guest
// write to the host's event. Medians of several runs; never asserts.
//   node bench/fs.mjs
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Sandbox } from "../dist/index.js";
import { fmt, stats } from "./common.mjs";

const SIZE = 64 << 20;
const RUNS = 5;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "krunbox-bench-fs-"));
const data = crypto.randomBytes(SIZE);
const ms = async (fn) => {
  const t = performance.now();
  await fn();
  return performance.now() - t;
};
const mibps = (samples) => (SIZE / (1 << 20)) / (stats(samples).median / 1000);
const exec = async (sb, cmd) => {
  const r = await sb.exec("sh", ["-c", cmd]);
  if (r.exitCode !== 0) throw new Error(`${cmd}: ${r.stderr}`);
};

const sb = await Sandbox.create({ memoryMiB: 1024, workdir: "/work", volumes: [{ type: "bind", source: dir, target: "/work/vol" }] });
try {
  const rows = [];
  const t = { fsWrite: [], fsRead: [], volIn: [], volOut: [] };
  for (let i = 0; i < RUNS; i++) {
    t.fsWrite.push(await ms(() => sb.fs.writeFile("/tmp/f", data)));
    t.fsRead.push(await ms(() => sb.fs.readFile("/tmp/f")));
    await exec(sb, "rm /tmp/f");
    // The same bytes through the volume: host file -> guest /tmp, and back.
    t.volIn.push(await ms(async () => {
      await fs.promises.writeFile(path.join(dir, "in"), data);
      await exec(sb, "cp /work/vol/in /tmp/f");
    }));
    t.volOut.push(await ms(async () => {
      await exec(sb, "cp /tmp/f /work/vol/out");
      await fs.promises.readFile(path.join(dir, "out"));
    }));
    await exec(sb, "rm /tmp/f /work/vol/in /work/vol/out");
  }
  rows.push(["host -> guest 64 MiB", mibps(t.fsWrite), mibps(t.volIn)]);
  rows.push(["guest -> host 64 MiB", mibps(t.fsRead), mibps(t.volOut)]);

  await exec(sb, "mkdir /tmp/many && cd /tmp/many && seq 1 10000 | xargs touch");
  fs.mkdirSync(path.join(dir, "many"));
  for (let i = 1; i <= 10000; i++) fs.writeFileSync(path.join(dir, "many", String(i)), "");
  const listSb = [];
  const listLs = [];
  for (let i = 0; i < RUNS; i++) {
    listSb.push(await ms(async () => {
      if ((await sb.fs.readdir("/tmp/many")).length !== 10000) throw new Error("readdir lost entries");
    }));
    listLs.push(await ms(() => exec(sb, "ls /tmp/many > /dev/null")));
  }

  // Watch latency: a guest shell writes a file each time the host sends it a
  // line; the time from sending the line to the host's event.
  await fs.promises.mkdir(path.join(dir, "w"));
  await exec(sb, "mkdir -p /work/w");
  const latency = { guest: [], host: [] };
  const waiting = new Map();
  const ac = new AbortController();
  const watching = (async () => {
    for await (const e of sb.fs.watch("/work", { recursive: true, signal: ac.signal })) waiting.get(e.filename)?.();
  })().catch(() => {});
  const writer = sb.spawn("sh", ["-c", "while read n; do echo x > /work/w/$n; done"], { stdin: "pipe" });
  const event = (name) => new Promise((resolve) => waiting.set(name, resolve));
  for (let warm = 0; ; warm++) {
    const seen = event(`w/warm${warm}`);
    writer.stdin.write(`warm${warm}\n`);
    if (await Promise.race([seen.then(() => true), new Promise((r) => setTimeout(() => r(false), 1000))])) break;
  }
  for (let i = 0; i < 50; i++) {
    const seen = event(`w/g${i}`);
    const t0 = performance.now();
    writer.stdin.write(`g${i}\n`);
    await seen;
    latency.guest.push(performance.now() - t0);
    const hostSeen = event(`vol/h${i}`);
    const t1 = performance.now();
    fs.writeFileSync(path.join(dir, `h${i}`), "x");
    await hostSeen;
    latency.host.push(performance.now() - t1);
  }
  writer.stdin.end();
  ac.abort();
  await watching;

  console.log(`sb.fs, accel=${sb.accel}, ${os.cpus().length} host cores, median of ${RUNS} (watch: of 50)`);
  console.log(`${"".padEnd(28)}     sb.fs   bind volume`);
  for (const [name, a, b] of rows) console.log(`${name.padEnd(28)} ${fmt(a)} MiB/s ${fmt(b)} MiB/s`);
  console.log(`${"readdir 10,000 entries".padEnd(28)} ${fmt(stats(listSb).median, 1)} ms     (ls in the guest: ${stats(listLs).median.toFixed(1)} ms)`);
  console.log(`${"watch: guest write -> event".padEnd(28)} ${fmt(stats(latency.guest).median, 1)} ms     (min ${stats(latency.guest).min.toFixed(1)}, max ${stats(latency.guest).max.toFixed(1)})`);
  console.log(`${"watch: host write -> event".padEnd(28)} ${fmt(stats(latency.host).median, 1)} ms     (through a volume)`);
} finally {
  await sb.stop();
  fs.rmSync(dir, { recursive: true, force: true });
}
