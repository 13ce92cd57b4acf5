// The fallback build: a package with no matching prebuilt addon is built at
// install time by the node-gyp that ships with npm (binding.gyp), with no
// cmake on the PATH, and the addon it makes boots a sandbox.
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { expect, it } from "vitest";
import { packageRoot } from "../lib/vm/runtime.js";
import { pathWithout, runAsync, tempDir } from "./helpers.js";

it("builds the addon with node-gyp when no prebuild matches, and boots a sandbox with it", async () => {
  const base = tempDir("krunbox-gyp-");
  const packed = JSON.parse(
    execFileSync("npm", ["pack", "--ignore-scripts", "--json", "--pack-destination", base], { cwd: packageRoot, encoding: "utf8" }),
  )[0];
  // The same package without its prebuilt addon.
  execFileSync("tar", ["xzf", packed.filename], { cwd: base });
  fs.rmSync(path.join(base, "package/prebuilds"), { recursive: true });
  expect(fs.existsSync(path.join(base, "package/binding.gyp"))).toBe(true);
  execFileSync("tar", ["czf", "source-only.tgz", "package"], { cwd: base });

  const env = {
    ...process.env,
    PATH: pathWithout(path.join(base, "bin"), (name) => name === "cmake" || name === "cmake-js"),
  };
  expect(spawnSync("sh", ["-c", "command -v cmake"], { env }).status).not.toBe(0);
  const app = path.join(base, "app");
  fs.mkdirSync(app);
  fs.writeFileSync(path.join(app, "package.json"), JSON.stringify({ name: "app", private: true, type: "module" }));
  // Asynchronously: a build of a minute or more must not block the test worker.
  const install = await runAsync("npm", ["install", "--no-audit", "--no-fund", "--prefer-offline", path.join(base, "source-only.tgz")], {
    cwd: app,
    env,
    timeoutMs: 300_000,
  });
  expect(install.status, install.stderr).toBe(0);
  const installed = path.join(app, "node_modules/krunbox");
  expect(fs.existsSync(path.join(installed, "build/Release/krunbox.node"))).toBe(true);
  expect(fs.existsSync(path.join(installed, "prebuilds"))).toBe(false);

  fs.writeFileSync(
    path.join(app, "main.js"),
    `import { Sandbox } from "krunbox";
import fs from "node:fs";
const sb = await Sandbox.create();
try {
  const r = await sb.exec("sh", ["-c", "echo built-$((40+2))"]);
  // The addon this process really loaded.
  const addon = fs.readFileSync("/proc/self/maps", "utf8").split("\\n").find((l) => l.endsWith("krunbox.node"));
  process.stdout.write(addon.slice(addon.indexOf("/")) + "\\n" + r.stdout);
} finally {
  await sb.stop();
}
`,
  );
  const r = await runAsync("node", ["main.js"], { cwd: app, env });
  expect(r.stderr).toBe("");
  expect(r.stdout).toBe(`${path.join(installed, "build/Release/krunbox.node")}\nbuilt-42\n`);
  fs.rmSync(base, { recursive: true, force: true });
}, 300_000);
