// `npm install krunbox` with no compiler: the packed tarball, installed into
// an empty project on a PATH without g++, cc, cmake, cargo or node-gyp,
// runs sandboxes through the CLI and through an import; then again from a
// copied runtime folder whose path contains spaces.
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { beforeAll, expect, it } from "vitest";
import { packageRoot } from "../lib/vm/runtime.js";
import { pathWithout, tempDir } from "./helpers.js";

const banned = new Set(["g++", "gcc", "cc", "c++", "cpp", "clang", "clang++", "cmake", "cargo", "rustc", "node-gyp", "make", "ninja"]);
let base: string;
let app: string;
let env: NodeJS.ProcessEnv;

beforeAll(() => {
  base = tempDir("krunbox pack ");
  const packed = JSON.parse(
    execFileSync("npm", ["pack", "--ignore-scripts", "--json", "--pack-destination", base], { cwd: packageRoot, encoding: "utf8" }),
  )[0];
  console.log(`npm pack: ${packed.filename}, ${(packed.size / 1048576).toFixed(1)} MiB packed, ` +
    `${(packed.unpackedSize / 1048576).toFixed(1)} MiB unpacked, ${packed.entryCount} files`);

  const bin = pathWithout(path.join(base, "bin"), (name) => banned.has(name) || /^(g\+\+|gcc|c\+\+|clang)-/.test(name));
  env = {
    ...process.env,
    PATH: bin,
    // The VMM comes from the system; on this host vhost-device-vsock is the
    // copy that setup unpacked from Debian.
    KRUNBOX_VSOCK_DAEMON: path.join(packageRoot, "deps/debian/root/usr/bin/vhost-device-vsock"),
  };
  for (const tool of ["g++", "cc", "cmake", "cargo", "node-gyp"])
    expect(spawnSync("sh", ["-c", `command -v ${tool}`], { env }).status, tool).not.toBe(0);

  app = path.join(base, "my app");
  fs.mkdirSync(app);
  fs.writeFileSync(path.join(app, "package.json"), JSON.stringify({ name: "app", private: true, type: "module" }));
  execFileSync("npm", ["install", "--no-audit", "--no-fund", "--prefer-offline", path.join(base, packed.filename)], {
    cwd: app,
    env,
    stdio: "inherit",
  });
  expect(fs.existsSync(path.join(app, "node_modules/krunbox/build"))).toBe(false); // nothing was compiled
  fs.writeFileSync(
    path.join(app, "main.js"),
    `import { Sandbox } from "krunbox";
const sb = await Sandbox.create();
try {
  const r = await sb.exec("sh", ["-c", "echo imported-$((40+2))"]);
  process.stdout.write(r.stdout);
} finally {
  await sb.stop();
}
`,
  );
}, 300_000);

it("runs a sandbox through the CLI", () => {
  const r = spawnSync("npx", ["krunbox", "run", "--", "echo", "ok"], { cwd: app, env, encoding: "utf8", timeout: 120_000 });
  expect(r.stderr).toBe("");
  expect(r.stdout).toBe("ok\n");
  expect(r.status).toBe(0);
});

it("runs a sandbox from a script that imports the package", () => {
  const r = spawnSync("node", ["main.js"], { cwd: app, env, encoding: "utf8", timeout: 120_000 });
  expect(r.stdout).toBe("imported-42\n");
  expect(r.status).toBe(0);
});

it("runs from a relocated runtime folder whose path contains spaces", () => {
  const installed = path.join(app, "node_modules/krunbox");
  const relocated = path.join(base, "unpacked native files", "krunbox runtime");
  fs.cpSync(path.join(installed, "runtime/linux-x64"), relocated, { recursive: true });
  fs.copyFileSync(path.join(installed, "prebuilds/linux-x64/krunbox.node"), path.join(relocated, "krunbox.node"));
  // Nothing may come from the package's own copies any more.
  fs.renameSync(path.join(installed, "runtime"), path.join(installed, "runtime.moved"));
  fs.renameSync(path.join(installed, "prebuilds"), path.join(installed, "prebuilds.moved"));
  try {
    const r = spawnSync("node", ["main.js"], {
      cwd: app,
      env: { ...env, KRUNBOX_RUNTIME_DIR: relocated, KRUNBOX_HOME: path.join(base, "home with spaces") },
      encoding: "utf8",
      timeout: 120_000,
    });
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("imported-42\n");
    const doctor = spawnSync("npx", ["krunbox", "doctor"], {
      cwd: app,
      env: { ...env, KRUNBOX_RUNTIME_DIR: relocated },
      encoding: "utf8",
      timeout: 60_000,
    });
    expect(doctor.stdout).toContain(`addon: ${path.join(relocated, "krunbox.node")} (krunbox `);
    expect(doctor.stdout).toContain(`runner: ${path.join(relocated, "krunbox-runner")} (krunbox-runner `);
  } finally {
    fs.renameSync(path.join(installed, "runtime.moved"), path.join(installed, "runtime"));
    fs.renameSync(path.join(installed, "prebuilds.moved"), path.join(installed, "prebuilds"));
  }
});
