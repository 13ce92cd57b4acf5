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
  // No prebuilt addon matches this Node/libc: build it from the shipped
  // sources with the node-gyp that ships with npm (binding.gyp), against
  // this Node's own headers when it has them (no download).
  console.warn("krunbox: no prebuilt addon matches; building it from source (needs g++, make, python3 and nlohmann-json3-dev)");
  const nodeGyp =
    process.env.npm_config_node_gyp ||
    path.join(path.dirname(process.execPath), "../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js");
  const nodeDir = path.resolve(process.execPath, "../..");
  const args = [nodeGyp, "rebuild"];
  if (fs.existsSync(path.join(nodeDir, "include/node/node_api.h"))) args.push(`--nodedir=${nodeDir}`);
  const r = spawnSync(process.execPath, args, { cwd: root, stdio: "inherit" });
  if (r.status !== 0) {
    console.error("krunbox: the source build failed; install g++, make, python3 and nlohmann-json3-dev (Debian/Ubuntu: apt-get install build-essential python3 nlohmann-json3-dev) and reinstall");
    process.exit(1);
  }
}
