// krunbox inside an Electron app, laid out as electron-builder packs one:
// the JavaScript in resources/app.asar/node_modules/krunbox, the native files
// (prebuilt addon, runtime folder) unpacked into
// resources/app.asar.unpacked/node_modules/krunbox. No Electron here: a plain
// folder named app.asar stands in for the archive, which is all krunbox's
// path logic sees (Electron's asar support only adds reading the archive).
import fs from "node:fs";
import path from "node:path";
import { expect, it } from "vitest";
import { packageRoot } from "../lib/vm/runtime.js";
import { runAsync, tempDir } from "./helpers.js";

it("finds its addon and runtime in app.asar.unpacked, and boots a sandbox from there", async () => {
  const resources = path.join(tempDir("krunbox-electron-"), "resources");
  const asar = path.join(resources, "app.asar");
  const unpacked = path.join(resources, "app.asar.unpacked");
  const js = path.join(asar, "node_modules/krunbox");
  const native = path.join(unpacked, "node_modules/krunbox");
  for (const part of ["package.json", "dist", "bin"]) fs.cpSync(path.join(packageRoot, part), path.join(js, part), { recursive: true });
  const deps = Object.keys(JSON.parse(fs.readFileSync(path.join(packageRoot, "package.json"), "utf8")).dependencies);
  for (const dep of deps) fs.cpSync(path.join(packageRoot, "node_modules", dep), path.join(asar, "node_modules", dep), { recursive: true });
  fs.cpSync(path.join(packageRoot, "runtime/linux-x64"), path.join(native, "runtime/linux-x64"), { recursive: true });
  fs.mkdirSync(path.join(native, "prebuilds/linux-x64"), { recursive: true });
  fs.copyFileSync(path.join(packageRoot, "prebuilds/linux-x64/krunbox.node"), path.join(native, "prebuilds/linux-x64/krunbox.node"));

  // The app's main process: imports krunbox by name from inside app.asar.
  fs.writeFileSync(
    path.join(asar, "main.mjs"),
    `import fs from "node:fs";
import { Sandbox } from "krunbox";
import { addonPath, runtimeDir } from "./node_modules/krunbox/dist/vm/runtime.js"; // the same module the package uses
const sb = await Sandbox.create();
try {
  const r = await sb.exec("echo", ["from-electron"]);
  const loaded = fs.readFileSync("/proc/self/maps", "utf8").split("\\n").find((l) => l.endsWith("krunbox.node"));
  console.log(JSON.stringify({ runtime: runtimeDir(), addon: addonPath(), loaded: loaded.slice(loaded.indexOf("/")), out: r.stdout }));
} finally {
  await sb.stop();
}
`,
  );
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== "KRUNBOX_RUNTIME_DIR"));
  const r = await runAsync(process.execPath, [path.join(asar, "main.mjs")], { cwd: asar, env });
  expect(r.stderr).toBe("");
  expect(JSON.parse(r.stdout)).toEqual({
    runtime: path.join(native, "runtime/linux-x64"),
    addon: path.join(native, "prebuilds/linux-x64/krunbox.node"),
    loaded: path.join(native, "prebuilds/linux-x64/krunbox.node"),
    out: "from-electron\n",
  });
  expect(fs.existsSync(path.join(js, "runtime"))).toBe(false);
});
