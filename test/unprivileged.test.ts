// krunbox as an ordinary user: the runner builds its share tree in a user
// namespace, and guest root maps to that user on the host.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { expect, it } from "vitest";
import { packageRoot } from "../lib/vm/runtime.js";
import { attackScript, expectSpecialFilesRefused, hostFolder, privileged, statuses, tempDir } from "./helpers.js";

const nobody = 65534;

// Runs `body` (an ES module's code, with Sandbox imported) as nobody, from a
// copy of the package the user can read; returns its output.
function asNobody(dir: string, body: string) {
  const pkg = path.join(dir, "krunbox");
  const deps = Object.keys(JSON.parse(fs.readFileSync(path.join(packageRoot, "package.json"), "utf8")).dependencies);
  for (const part of ["package.json", "dist", "prebuilds", "runtime", ...deps.map((d) => `node_modules/${d}`)])
    fs.cpSync(path.join(packageRoot, part), path.join(pkg, part), { recursive: true });
  const script = path.join(dir, "main.mjs");
  fs.writeFileSync(script, `import { Sandbox } from ${JSON.stringify(path.join(pkg, "dist/index.js"))};\n${body}`);
  return spawnSync("setpriv", [`--reuid=${nobody}`, `--regid=${nobody}`, "--clear-groups", process.execPath, script], {
    encoding: "utf8",
    timeout: 120_000,
    env: { ...process.env, HOME: dir, KRUNBOX_HOME: path.join(dir, "home"), KRUNBOX_RUN_DIR: path.join(dir, "run") },
  });
}

it.runIf(process.getuid?.() === 0)("runs a sandbox with a read-write volume as an unprivileged user", () => {
  const dir = tempDir();
  const data = path.join(dir, "data");
  fs.mkdirSync(data);
  hostFolder(data); // with a root-owned file the guest must not make setuid
  fs.chownSync(dir, nobody, nobody);
  fs.chownSync(data, nobody, nobody);
  const r = asNobody(
    dir,
    `const sb = await Sandbox.create({ volumes: [${JSON.stringify(`${data}:/data`)}] });
try {
  const r = await sb.exec("sh", ["-c", "id -u; echo from-guest > /data/out; " + ${JSON.stringify(attackScript("/data"))}]);
  process.stdout.write(r.stdout);
} finally {
  await sb.stop();
}
`,
  );
  expect(r.stderr).toBe("");
  expect(r.stdout.split("\n")[0]).toBe("0");
  expect(fs.readFileSync(path.join(data, "out"), "utf8")).toBe("from-guest\n");
  expect(fs.statSync(path.join(data, "out")).uid).toBe(nobody); // guest root is the user, not host root
  // Not even setuid-nobody: the share server refuses the bits for any owner.
  expectSpecialFilesRefused(statuses(r.stdout));
  expect(privileged(data)).toEqual([]);
});

// The share server runs in a user namespace of its own here: mounts the
// runner adds later must still reach it, read-only ones read-only.
it.runIf(process.getuid?.() === 0)("attaches volumes to a pooled sandbox as an unprivileged user", () => {
  const dir = tempDir();
  const [rw, ro] = [path.join(dir, "rw"), path.join(dir, "ro")];
  for (const d of [dir, rw, ro]) {
    fs.mkdirSync(d, { recursive: true });
    fs.chownSync(d, nobody, nobody);
  }
  fs.writeFileSync(path.join(ro, "file"), "original");
  fs.chownSync(path.join(ro, "file"), nobody, nobody);
  const r = asNobody(
    dir,
    `const pool = Sandbox.pool({ size: 1 });
const sb = await pool.acquire({ volumes: [${JSON.stringify(`${rw}:/rw`)}, ${JSON.stringify(`${ro}:/ro:ro`)}] });
try {
  const r = await sb.exec("sh", ["-c", "echo out > /rw/out; cat /ro/file; echo; mount -o remount,rw /ro; echo x > /ro/file && echo WROTE"]);
  process.stdout.write(r.stdout);
} finally {
  await sb.stop();
  await pool.close();
}
`,
  );
  expect(r.stderr).toBe("");
  expect(r.stdout).toBe("original\n");
  expect(fs.readFileSync(path.join(rw, "out"), "utf8")).toBe("out\n");
  expect(fs.readFileSync(path.join(ro, "file"), "utf8")).toBe("original");
});

// krunbox mcp run by an ordinary user: its volume quota cannot be
// enforced, so the volume is refused (a LimitError naming the flag), and
// nothing is created.
it.runIf(process.getuid?.() === 0)("refuses a model's named volume it cannot give a quota, as an unprivileged user", () => {
  const dir = tempDir();
  fs.chownSync(dir, nobody, nobody);
  const r = asNobody(
    dir,
    `const { createQuotaVolumes } = await import(${JSON.stringify(path.join(dir, "krunbox/dist/mcp/guards/volumes.js"))});
const { Volume } = await import(${JSON.stringify(path.join(dir, "krunbox/dist/index.js"))});
try {
  await createQuotaVolumes([{ type: "named", name: "mcp-x", target: "/x", readOnly: false }], { volumeQuotaMiB: 64 });
  console.log("created");
} catch (err) {
  console.log(err.constructor.name, err.limit, err.message);
}
console.log("volumes:", (await Volume.list()).length);
`,
  );
  expect(r.stderr).toBe("");
  expect(r.stdout).toMatch(/^LimitError --volume-quota refused: the named volume "mcp-x" would be created with a 64 MiB quota, which this host cannot enforce \(volume quotas need root.*--volume-quota none/);
  expect(r.stdout).toContain("volumes: 0\n");
});
