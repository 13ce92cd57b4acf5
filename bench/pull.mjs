// Pull + unpack throughput from a registry on 127.0.0.1 (Debian's
// docker-registry, as in the tests): an image of two gzip layers, 64 MiB of
// incompressible data in 256 files plus busybox. Prints MiB/s of compressed
// bytes pulled and of bytes unpacked.
//   node bench/pull.mjs [runs=3]
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { pullImage, removeImage } from "../dist/index.js";
import { buildLayout, push, startRegistry } from "../test/fixtures/registry.mjs";

const runs = Number(process.argv[2] ?? 3);
process.env.KRUNBOX_HOME = fs.mkdtempSync(path.join(os.tmpdir(), "krunbox-bench-home-"));
const registry = await startRegistry();
try {
  const { layout } = buildLayout(
    [
      { fill: (d) => fs.copyFileSync("/bin/busybox", path.join(d, "busybox")) },
      {
        fill: (d) => {
          for (let i = 0; i < 256; i++) fs.writeFileSync(path.join(d, `f${i}`), crypto.randomBytes(256 * 1024));
        },
      },
    ],
    {},
  );
  const ref = `${registry.host}/bench/data:1`;
  await push(layout, ref);
  const times = [];
  let packed = 0;
  let unpacked = 0;
  for (let i = 0; i < runs; i++) {
    const sizes = new Map();
    const t = performance.now();
    const image = await pullImage(ref, { pullPolicy: "always", onProgress: (p) => sizes.set(p.layer, p.bytesTotal) });
    times.push((performance.now() - t) / 1000);
    packed = [...sizes.values()].reduce((a, b) => a + b, 0);
    unpacked = fs.readdirSync(image.rootfs).reduce((n, f) => n + fs.statSync(path.join(image.rootfs, f)).size, 0);
    removeImage(ref);
    fs.rmSync(path.join(process.env.KRUNBOX_HOME, "images/blobs"), { recursive: true, force: true });
  }
  times.sort((a, b) => a - b);
  const median = times[Math.floor(times.length / 2)];
  console.log(`pull + unpack from a local registry, ${runs} runs, median ${median.toFixed(2)} s`);
  console.log(`  ${(packed / 1048576).toFixed(1)} MiB pulled: ${(packed / 1048576 / median).toFixed(1)} MiB/s`);
  console.log(`  ${(unpacked / 1048576).toFixed(1)} MiB unpacked: ${(unpacked / 1048576 / median).toFixed(1)} MiB/s`);
} finally {
  await registry.stop();
  fs.rmSync(process.env.KRUNBOX_HOME, { recursive: true, force: true });
}
