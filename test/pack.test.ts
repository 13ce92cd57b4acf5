// `npm install krunbox` as a user on a stock distribution gets it: the packed
// tarball, installed into an empty project whose PATH holds only Node, sh and
// the distribution's QEMU (no compiler, no virtiofsd, no vhost-device-vsock) and
// whose environment has no KRUNBOX_* variable, runs sandboxes through the CLI
// and through an import; again with /dev/kvm hidden when the host has one;
// and from a copied runtime folder whose path contains spaces.
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { beforeAll, expect, it } from "vitest";
import { packageRoot } from "../lib/vm/runtime.js";
import { runAsync, tempDir, withoutKvm } from "./helpers.js";

let base: string;
let app: string;
let env: NodeJS.ProcessEnv;

/** The folder holding `name` on this process's PATH. */
function dirOf(name: string): string {
  const found = (process.env.PATH ?? "").split(path.delimiter).find((d) => d && fs.existsSync(path.join(d, name)));
  if (!found) throw new Error(`${name} is not on PATH`);
  return found;
}

/** A bin folder with links to node, npm, npx, sh (npm runs install scripts with it) and the QEMU system emulators, nothing else. */
function nodeAndQemuOnly(bin: string): string {
  fs.mkdirSync(bin);
  for (const name of ["node", "npm", "npx", "sh"]) fs.symlinkSync(path.join(dirOf(name), name), path.join(bin, name));
  const qemuDir = dirOf("qemu-system-x86_64");
  for (const name of fs.readdirSync(qemuDir).filter((n) => n.startsWith("qemu-system-")))
    fs.symlinkSync(path.join(qemuDir, name), path.join(bin, name));
  return bin;
}

beforeAll(async () => {
  base = tempDir("krunbox pack ");
  const packed = JSON.parse(
    execFileSync("npm", ["pack", "--ignore-scripts", "--json", "--pack-destination", base], { cwd: packageRoot, encoding: "utf8" }),
  )[0];
  console.log(`npm pack: ${packed.filename}, ${(packed.size / 1048576).toFixed(1)} MiB packed, ` +
    `${(packed.unpackedSize / 1048576).toFixed(1)} MiB unpacked, ${packed.entryCount} files`);
  // Nothing from tests or fetched inputs, and only the one prebuilt addon.
  const files: string[] = packed.files.map((f: { path: string }) => f.path);
  expect(files.filter((f) => /^(test|deps|build|bench|node_modules)\//.test(f))).toEqual([]);
  expect(files.filter((f) => f.startsWith("prebuilds/"))).toEqual(["prebuilds/linux-x64/krunbox.node"]);

  const home = path.join(base, "home");
  fs.mkdirSync(home);
  env = {
    // A user's environment: no KRUNBOX_* (krunbox state goes to HOME, run
    // folders to TMPDIR); npm's cache is reused only to spare the network.
    ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("KRUNBOX_"))),
    PATH: nodeAndQemuOnly(path.join(base, "bin")),
    HOME: home,
    TMPDIR: base,
    npm_config_cache: execFileSync("npm", ["config", "get", "cache"], { encoding: "utf8" }).trim(),
    // How the leak check below finds this test's processes.
    PACK_TEST_BASE: base,
  };
  for (const tool of ["g++", "cc", "cmake", "cargo", "node-gyp", "virtiofsd", "vhost-device-vsock"])
    expect(spawnSync("/bin/sh", ["-c", `command -v ${tool}`], { env }).status, tool).not.toBe(0);

  app = path.join(base, "my app");
  fs.mkdirSync(app);
  fs.writeFileSync(path.join(app, "package.json"), JSON.stringify({ name: "app", private: true, type: "module" }));
  const install = await runAsync("npm", ["install", "--no-audit", "--no-fund", "--prefer-offline", path.join(base, packed.filename)], {
    cwd: app,
    env,
    timeoutMs: 300_000,
  });
  expect(install.status, install.stderr).toBe(0);
  expect(fs.existsSync(path.join(app, "node_modules/krunbox/build"))).toBe(false); // nothing was compiled
  fs.writeFileSync(
    path.join(app, "main.js"),
    `import { Sandbox } from "krunbox";
const sb = await Sandbox.create();
try {
  const r = await sb.exec("sh", ["-c", "echo imported-$((40+2))"]);
  process.stdout.write(r.stdout + sb.accel + "\\n");
} finally {
  await sb.stop();
}
`,
  );
}, 300_000);

async function runsSandboxes(wrap: (argv: string[]) => [string, string[]] = (argv) => [argv[0], argv.slice(1)]): Promise<string> {
  const cli = await runAsync(...wrap(["npx", "krunbox", "run", "--", "echo", "ok"]), { cwd: app, env });
  expect(cli.stderr).toBe("");
  expect(cli.stdout).toBe("ok\n");
  expect(cli.status).toBe(0);
  const imported = await runAsync(...wrap([process.execPath, "main.js"]), { cwd: app, env });
  expect(imported.stderr).toBe("");
  expect(imported.stdout).toMatch(/^imported-42\n(kvm|tcg)\n$/);
  expect(imported.status).toBe(0);
  return imported.stdout.split("\n")[1];
}

it("runs sandboxes through the CLI and an import, with the daemons it ships", async () => {
  await runsSandboxes();
  const doctor = await runAsync("npx", ["krunbox", "doctor"], { cwd: app, env });
  const runtime = path.join(app, "node_modules/krunbox/runtime/linux-x64");
  expect(doctor.stdout).toContain(`ok    virtiofsd: ${runtime}/virtiofsd (bundled): virtiofsd 1.`);
  expect(doctor.stdout).toContain(`ok    vsock daemon: ${runtime}/vhost-device-vsock (bundled)`);
  expect(doctor.stdout).toContain(`ok    qemu: ${path.join(base, "bin/qemu-system-x86_64")} (system, on PATH): QEMU emulator version`);
  expect(doctor.status).toBe(0);
});

it.runIf(fs.existsSync("/dev/kvm") && process.getuid?.() === 0)("runs them with /dev/kvm hidden, under TCG", async () => {
  expect(await runsSandboxes((argv) => withoutKvm(...argv))).toBe("tcg");
});

it("runs from a relocated runtime folder whose path contains spaces", async () => {
  const installed = path.join(app, "node_modules/krunbox");
  const relocated = path.join(base, "unpacked native files", "krunbox runtime");
  fs.cpSync(path.join(installed, "runtime/linux-x64"), relocated, { recursive: true });
  fs.copyFileSync(path.join(installed, "prebuilds/linux-x64/krunbox.node"), path.join(relocated, "krunbox.node"));
  // Nothing may come from the package's own copies any more.
  fs.renameSync(path.join(installed, "runtime"), path.join(installed, "runtime.moved"));
  fs.renameSync(path.join(installed, "prebuilds"), path.join(installed, "prebuilds.moved"));
  try {
    const relocatedEnv = { ...env, KRUNBOX_RUNTIME_DIR: relocated, HOME: path.join(base, "home with spaces") };
    fs.mkdirSync(relocatedEnv.HOME);
    const r = await runAsync("node", ["main.js"], { cwd: app, env: relocatedEnv });
    expect(r.stderr).toBe("");
    expect(r.stdout).toMatch(/^imported-42\n/);
    const doctor = await runAsync("npx", ["krunbox", "doctor"], { cwd: app, env: relocatedEnv });
    expect(doctor.stdout).toContain(`addon: ${path.join(relocated, "krunbox.node")} (krunbox `);
    expect(doctor.stdout).toContain(`runner: ${path.join(relocated, "krunbox-runner")} (krunbox-runner `);
    expect(doctor.stdout).toContain(`virtiofsd: ${path.join(relocated, "virtiofsd")} (bundled, from KRUNBOX_RUNTIME_DIR)`);
  } finally {
    fs.renameSync(path.join(installed, "runtime.moved"), path.join(installed, "runtime"));
    fs.renameSync(path.join(installed, "prebuilds.moved"), path.join(installed, "prebuilds"));
  }
});

it("leaves nothing running", () => {
  const stray = fs.readdirSync("/proc").filter((pid) => {
    try {
      return (
        /^\d+$/.test(pid) &&
        /^(qemu-system|virtiofsd|vhost-device|krunbox-runner)/.test(fs.readFileSync(`/proc/${pid}/comm`, "utf8")) &&
        fs.readFileSync(`/proc/${pid}/environ`, "latin1").includes(`PACK_TEST_BASE=${base}\0`)
      );
    } catch {
      return false; // gone
    }
  });
  expect(stray).toEqual([]);
});
