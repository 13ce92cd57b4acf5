// Assembles the guest from the Debian inputs that setup.sh unpacked and the
// agent that cmake built, into deps/out/:
//   vmlinuz         Debian's cloud kernel
//   initramfs.cpio  /init = krunbox-agent, plus the virtio-mmio, virtio-fs,
//                   vsock and overlay modules and their load order
//   rootfs/         the default root: busybox-static and the agent
//   rootfs.id       a content hash naming its copy in ~/.krunbox/images
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const debRoot = path.join(root, "deps/debian/root");
const out = path.join(root, "deps/out");
const agent = path.join(root, "build/Release/krunbox-agent");
const busybox = "/bin/busybox";
// What the agent needs before it can reach the host and its files.
const wantedModules = ["virtio_mmio", "virtiofs", "vmw_vsock_virtio_transport", "overlay"];

function fail(message) {
  console.error(`krunbox build-guest: error: ${message}`);
  process.exit(1);
}

const release = fs.readFileSync(path.join(root, "deps/debian/kernel-release"), "utf8").trim();
const kernel = path.join(debRoot, "boot", `vmlinuz-${release}`);
const moduleDir = path.join(debRoot, "lib/modules", release);
// Debian's kernel package leaves modules.dep to depmod at install time.
if (fs.existsSync(moduleDir) && !fs.existsSync(path.join(moduleDir, "modules.dep"))) {
  const depmod = ["/usr/sbin/depmod", "/sbin/depmod"].find((f) => fs.existsSync(f));
  if (!depmod) fail("depmod not found: apt-get install kmod");
  execFileSync(depmod, ["-b", debRoot, release]);
}
for (const [file, remedy] of [
  [kernel, "run `npm run setup` to fetch the kernel package"],
  [path.join(moduleDir, "modules.dep"), "run `npm run setup` to fetch the kernel package"],
  [agent, "run `npm run build` to build the agent"],
  [busybox, "apt-get install busybox-static"],
]) {
  if (!fs.existsSync(file)) fail(`${file} is missing: ${remedy}`);
}

// modules.dep lines: "kernel/a/b.ko: kernel/c.ko kernel/d.ko"
const deps = new Map();
for (const line of fs.readFileSync(path.join(moduleDir, "modules.dep"), "utf8").split("\n")) {
  const [mod, rest] = line.split(":");
  if (mod) deps.set(mod, rest.trim() ? rest.trim().split(/\s+/) : []);
}
const byName = new Map([...deps.keys()].map((m) => [path.basename(m, ".ko").replace(/-/g, "_"), m]));
const order = [];
const visit = (mod) => {
  if (order.includes(mod)) return;
  for (const dep of deps.get(mod) ?? []) visit(dep);
  order.push(mod);
};
for (const name of wantedModules) {
  const mod = byName.get(name);
  if (!mod) fail(`kernel ${release} has no module ${name}`);
  visit(mod);
}

function replaceDir(dir, build) {
  const tmp = `${dir}.tmp-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp, { recursive: true });
  build(tmp);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.renameSync(tmp, dir);
}

fs.mkdirSync(out, { recursive: true });
fs.copyFileSync(kernel, path.join(out, "vmlinuz"));

replaceDir(path.join(out, "initramfs"), (dir) => {
  for (const d of ["dev", "proc", "sys", "run", "lib/modules"]) fs.mkdirSync(path.join(dir, d), { recursive: true });
  fs.copyFileSync(agent, path.join(dir, "init"));
  fs.chmodSync(path.join(dir, "init"), 0o755);
  for (const mod of order) fs.copyFileSync(path.join(moduleDir, mod), path.join(dir, "lib/modules", path.basename(mod)));
  fs.writeFileSync(path.join(dir, "lib/modules/order"), order.map((m) => path.basename(m)).join("\n") + "\n");
});
const files = execFileSync("find", [".", "-mindepth", "1"], { cwd: path.join(out, "initramfs") })
  .toString()
  .split("\n")
  .filter(Boolean)
  .sort()
  .join("\n");
const cpio = execFileSync("cpio", ["--quiet", "-o", "-H", "newc", "--reproducible", "-R", "0:0"], {
  cwd: path.join(out, "initramfs"),
  input: files + "\n",
  maxBuffer: 256 << 20,
});
fs.writeFileSync(path.join(out, "initramfs.cpio"), cpio);

replaceDir(path.join(out, "rootfs"), (dir) => {
  for (const d of ["bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp", "run", "mnt", "root", "home", "var"])
    fs.mkdirSync(path.join(dir, d), { recursive: true });
  fs.chmodSync(path.join(dir, "tmp"), 0o1777);
  fs.copyFileSync(busybox, path.join(dir, "bin/busybox"));
  fs.chmodSync(path.join(dir, "bin/busybox"), 0o755);
  for (const applet of execFileSync(busybox, ["--list-full"]).toString().split("\n").filter(Boolean)) {
    const link = path.join(dir, applet);
    if (applet === "bin/busybox" || fs.existsSync(link)) continue;
    fs.mkdirSync(path.dirname(link), { recursive: true });
    fs.symlinkSync(path.relative(path.dirname(link), path.join(dir, "bin/busybox")), link);
  }
  fs.copyFileSync(agent, path.join(dir, "sbin/krunbox-agent"));
  fs.chmodSync(path.join(dir, "sbin/krunbox-agent"), 0o755);
  fs.writeFileSync(path.join(dir, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n");
  fs.writeFileSync(path.join(dir, "etc/group"), "root:x:0:\nnogroup:x:65534:\n");
});

// Names the default image's copy under ~/.krunbox/images (lib/runtime.ts).
const hash = createHash("sha256");
for (const f of [busybox, agent]) hash.update(fs.readFileSync(f));
fs.writeFileSync(path.join(out, "rootfs.id"), hash.digest("hex").slice(0, 16) + "\n");

console.log(`krunbox build-guest: kernel ${release}, ${order.length} modules, ` +
  `initramfs ${(cpio.length / 1048576).toFixed(1)} MiB, root ${path.join(out, "rootfs")}`);
