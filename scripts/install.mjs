// Runs when the package is installed: the prebuilt addon and the runtime
// folder ship in the package, so normally there is nothing to do. A source
// checkout builds through `npm run setup` instead (the "prepare" script).
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
if (fs.existsSync(path.join(root, ".git"))) process.exit(0);

const target = `${process.platform}-${process.arch}`;
if (!fs.existsSync(path.join(root, "runtime", target))) {
  console.warn(`krunbox: no runtime for ${target}: krunbox runs on linux-x64 hosts (QEMU or libkrun) only.`);
  process.exit(0);
}
try {
  createRequire(import.meta.url)("node-gyp-build").resolve(root);
} catch {
  // No prebuilt addon matches this Node/libc: build it from the shipped sources.
  console.warn("krunbox: no prebuilt addon matches; building from source (needs g++, cmake and nlohmann-json3-dev)");
  const r = spawnSync("npx", ["--yes", "cmake-js@8", "build", "--out", "build", "--target", "krunbox"], { cwd: root, stdio: "inherit" });
  if (r.status !== 0) {
    console.error("krunbox: the source build failed; install g++, cmake and nlohmann-json3-dev and reinstall");
    process.exit(1);
  }
}
