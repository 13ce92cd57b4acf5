// Network figures, through the policy path (guest -> virtio-net -> the
// runner's stack -> a host socket), against a server on the host's loopback:
//   - a 64 MiB HTTP download into the guest vs the same download on the host
//     (the same client, busybox wget, both times)
//   - connection set-up: sequential small HTTP requests (DNS + connect +
//     request + close) through the policy path, with and without an
//     onConnect callback, vs the same requests to a server in the guest (lo)
//   node bench/network.mjs [downloads=5] [requests=100]
import { spawn } from "node:child_process";
import crypto from "node:crypto";
import http from "node:http";
import os from "node:os";
import { Sandbox } from "../dist/index.js";
import { fmt, stats } from "./common.mjs";

const downloads = Number(process.argv[2] ?? 5);
const requests = Number(process.argv[3] ?? 100);
const size = 64 << 20;
const blob = crypto.randomBytes(size);

const server = http.createServer((req, res) => {
  if (req.url === "/64m") {
    res.writeHead(200, { "content-length": size });
    res.end(blob);
  } else {
    res.end("ok\n");
  }
});
await new Promise((r) => server.listen(0, "127.0.0.1", r));
const port = server.address().port;

// The host's own download, with busybox wget too (asynchronous: this process serves it).
const hostRun = (args) =>
  new Promise((resolve, reject) => {
    const t = performance.now();
    spawn("/bin/busybox", args, { stdio: "ignore" }).on("exit", (code) =>
      code === 0 ? resolve(performance.now() - t) : reject(new Error(`busybox ${args.join(" ")}: exit ${code}`)),
    );
  });
const hostDownload = [];
for (let i = 0; i < downloads; i++) hostDownload.push(await hostRun(["wget", "-qO", "/dev/null", `http://127.0.0.1:${port}/64m`]));

async function timed(sb, script) {
  const t = performance.now();
  const r = await sb.exec("sh", ["-c", script]);
  if (r.exitCode !== 0) throw new Error(`${script}: ${r.stderr}`);
  return performance.now() - t;
}

const loop = (n, cmd) => `i=0; while [ $i -lt ${n} ]; do ${cmd} || exit 1; i=$((i+1)); done`;
const network = { allow: [`svc.test:${port}`], hosts: { "svc.test": "127.0.0.1" } };

const sb = await Sandbox.create({ network });
const accel = sb.accel;
const execOverhead = stats(await Promise.all([0, 1, 2, 3, 4].map(() => timed(sb, "true")))).median;
const guestDownload = [];
for (let i = 0; i < downloads; i++)
  guestDownload.push((await timed(sb, `wget -qO /dev/null http://svc.test:${port}/64m`)) - execOverhead);
const remote = (await timed(sb, loop(requests, `wget -qO /dev/null http://svc.test:${port}/`))) / requests;
await sb.exec("sh", ["-c", "mkdir -p /www && echo ok > /www/index.html"]);
sb.spawn("httpd", ["-f", "-p", "127.0.0.1:9000", "-h", "/www"]);
await new Promise((r) => setTimeout(r, 300));
const local = (await timed(sb, loop(requests, "wget -qO /dev/null http://127.0.0.1:9000/"))) / requests;
await sb.stop();

const asking = await Sandbox.create({ network: { ...network, onConnect: () => true } });
const withCallback = (await timed(asking, loop(requests, `wget -qO /dev/null http://svc.test:${port}/`))) / requests;
await asking.stop();
server.close();

const mibps = (ms) => size / 1048576 / (ms / 1000);
const h = stats(hostDownload), g = stats(guestDownload);
console.log(`network figures, accel=${accel}, ${os.cpus().length} host cores, ${downloads} downloads of 64 MiB, ${requests} requests`);
console.log(`download, host (busybox wget)     ${fmt(h.median)} ms  ${fmt(mibps(h.median), 1)} MiB/s`);
console.log(`download, guest via policy path   ${fmt(g.median)} ms  ${fmt(mibps(g.median), 1)} MiB/s  (${(g.median / h.median).toFixed(1)}x)`);
console.log(`request, guest -> host via policy ${fmt(remote, 1)} ms each (DNS + connect + GET + close)`);
console.log(`request, same with onConnect      ${fmt(withCallback, 1)} ms each`);
console.log(`request, guest -> guest's own lo  ${fmt(local, 1)} ms each (baseline: wget's own cost under ${accel})`);
console.log(`policy path adds ${(remote - local).toFixed(1)} ms per connection, onConnect ${(withCallback - remote).toFixed(1)} ms more`);
