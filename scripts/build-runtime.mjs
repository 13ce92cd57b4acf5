// Assembles the runtime folder that ships in the npm package, from the
// Debian inputs that setup.sh unpacked and what cmake built:
//   runtime/linux-x64/
//     krunbox-runner   one process per VM
//     virtiofsd        the share server (Rust virtiofsd, scripts/build-virtiofsd.mjs)
//     vhost-device-vsock  the vsock device (Debian sid's binary)
//     vmlinux.gz       Debian's cloud kernel, uncompressed from its bzImage
//                      (QEMU starts it at its PVH entry point: no
//                      decompression at every boot) and gzipped (lib/vm/
//                      runtime.ts unpacks it into ~/.krunbox on first use)
//     initramfs.cpio   /init = krunbox-agent, plus the virtio-mmio,
//                      virtio-fs, vsock and overlay modules and their order,
//                      virtio-net's (loaded only when the VM has a network)
//                      and virtio-blk, erofs and squashfs (only for a disk root)
//     krunbox-agent, busybox, busybox.applets
//                      what the default image is made of (lib/runtime.ts
//                      assembles it under ~/.krunbox/images on first use)
//     versions.json    what doctor reports
//     licenses/        the license texts of everything bundled
// The addon itself goes to prebuilds/linux-x64 (prebuildify).
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import zlib from "node:zlib";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const debRoot = path.join(root, "deps/debian/root");
const out = path.join(root, "runtime/linux-x64");
const built = path.join(root, "build/Release");
const busybox = "/bin/busybox";
const virtiofsdDir = path.join(root, "deps/virtiofsd/out");
const vsockDaemon = path.join(debRoot, "usr/bin/vhost-device-vsock");
// Everything on the host side must run on Debian 12, Ubuntu 22.04 and Fedora 36.
const maxGlibc = "2.34";
// What the agent needs before it can reach the host and its files.
const wantedModules = ["virtio_mmio", "virtiofs", "vmw_vsock_virtio_transport", "overlay"];
// ...and what a VM with a network needs on top.
const networkModules = ["virtio_net"];
// ...and one whose root is a disk image (ext4 is built into the kernel).
const diskModules = ["virtio_blk", "erofs", "squashfs"];

function fail(message) {
  console.error(`krunbox build-runtime: error: ${message}`);
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
  [path.join(built, "krunbox-agent"), "run `npm run setup` to build the agent"],
  [path.join(built, "krunbox-runner"), "run `npm run setup` to build the runner"],
  [busybox, "apt-get install busybox-static"],
  [path.join(virtiofsdDir, "virtiofsd"), "run `npm run setup` to build virtiofsd"],
  [vsockDaemon, "run `npm run setup` to fetch vhost-device-vsock"],
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
// Each list in dependency order; a module already in an earlier list is skipped.
const loaded = new Set();
const moduleOrder = (names) => {
  const order = [];
  const visit = (mod) => {
    if (loaded.has(mod)) return;
    loaded.add(mod);
    for (const dep of deps.get(mod) ?? []) visit(dep);
    order.push(mod);
  };
  for (const name of names) {
    const mod = byName.get(name);
    if (!mod) fail(`kernel ${release} has no module ${name}`);
    visit(mod);
  }
  return order;
};
const order = moduleOrder(wantedModules);
const netOrder = moduleOrder(networkModules);
const diskOrder = moduleOrder(diskModules);

// The vmlinux inside a bzImage: its setup header (boot protocol 2.08+) says
// where the compressed payload lies; its magic says how it was compressed.
// Kbuild ends lz4, xz and zstd payloads with the uncompressed size (gzip
// carries its own).
function vmlinuxOf(bzImage) {
  const b = fs.readFileSync(bzImage);
  if (b.toString("latin1", 0x202, 0x206) !== "HdrS" || b.readUInt16LE(0x206) < 0x208) fail(`${bzImage} is not a bzImage of boot protocol 2.08 or newer`);
  const start = ((b[0x1f1] || 4) + 1) * 512 + b.readUInt32LE(0x248);
  const payload = b.subarray(start, start + b.readUInt32LE(0x24c));
  const tools = [
    ["02214c18", ["lz4", "-dc"], "lz4"],
    ["fd377a585a00", ["xz", "-dc"], "xz-utils"],
    ["28b52ffd", ["zstd", "-dcq"], "zstd"],
  ];
  let elf;
  if (payload.subarray(0, 2).toString("hex") === "1f8b") elf = zlib.gunzipSync(payload);
  for (const [magic, [cmd, ...args], pkg] of tools) {
    if (elf || !payload.subarray(0, magic.length / 2).equals(Buffer.from(magic, "hex"))) continue;
    try {
      elf = execFileSync(cmd, args, { input: payload.subarray(0, -4), maxBuffer: 1 << 30 });
    } catch (err) {
      fail(`cannot decompress the kernel with ${cmd} (${err.message.split("\n")[0]}): apt-get install ${pkg}`);
    }
    if (elf.length !== payload.readUInt32LE(payload.length - 4)) fail(`the kernel in ${bzImage} decompressed to an unexpected size`);
  }
  if (!elf || elf.toString("latin1", 0, 4) !== "\x7fELF") fail(`no vmlinux found in ${bzImage}`);
  return elf;
}

const tmp = `${out}.tmp-${process.pid}`;
fs.rmSync(tmp, { recursive: true, force: true });
fs.mkdirSync(tmp, { recursive: true });
const install = (from, name, mode = 0o644) => {
  fs.copyFileSync(from, path.join(tmp, name));
  fs.chmodSync(path.join(tmp, name), mode);
};

// The initramfs, from a staging folder.
const stage = path.join(tmp, "initramfs.d");
for (const d of ["dev", "proc", "sys", "run", "lib/modules"]) fs.mkdirSync(path.join(stage, d), { recursive: true });
fs.copyFileSync(path.join(built, "krunbox-agent"), path.join(stage, "init"));
fs.chmodSync(path.join(stage, "init"), 0o755);
for (const mod of [...order, ...netOrder, ...diskOrder])
  fs.copyFileSync(path.join(moduleDir, mod), path.join(stage, "lib/modules", path.basename(mod)));
fs.writeFileSync(path.join(stage, "lib/modules/order"), order.map((m) => path.basename(m)).join("\n") + "\n");
fs.writeFileSync(path.join(stage, "lib/modules/order.net"), netOrder.map((m) => path.basename(m)).join("\n") + "\n");
fs.writeFileSync(path.join(stage, "lib/modules/order.disk"), diskOrder.map((m) => path.basename(m)).join("\n") + "\n");
const files = execFileSync("find", [".", "-mindepth", "1"], { cwd: stage }).toString().split("\n").filter(Boolean).sort();
const cpio = execFileSync("cpio", ["--quiet", "-o", "-H", "newc", "--reproducible", "-R", "0:0"], {
  cwd: stage,
  input: files.join("\n") + "\n",
  maxBuffer: 256 << 20,
});
fs.writeFileSync(path.join(tmp, "initramfs.cpio"), cpio);
fs.rmSync(stage, { recursive: true });

const vmlinuxGz = zlib.gzipSync(vmlinuxOf(kernel), { level: 9 });
fs.writeFileSync(path.join(tmp, "vmlinux.gz"), vmlinuxGz);
install(path.join(built, "krunbox-runner"), "krunbox-runner", 0o755);
install(path.join(built, "krunbox-agent"), "krunbox-agent", 0o755);
install(busybox, "busybox", 0o755);
install(path.join(virtiofsdDir, "virtiofsd"), "virtiofsd", 0o755);
install(vsockDaemon, "vhost-device-vsock", 0o755);
// The newest glibc symbol version each host program needs.
const glibcOf = (file) =>
  [...execFileSync("objdump", ["-T", file], { encoding: "utf8", maxBuffer: 64 << 20 }).matchAll(/GLIBC_([0-9.]+)/g)]
    .map((m) => m[1])
    .sort((a, b) => a.localeCompare(b, undefined, { numeric: true }))
    .at(-1);
const glibc = {};
for (const program of ["krunbox-runner", "virtiofsd", "vhost-device-vsock"]) {
  glibc[program] = glibcOf(path.join(tmp, program));
  if (glibc[program].localeCompare(maxGlibc, undefined, { numeric: true }) > 0)
    fail(`${program} needs glibc ${glibc[program]}, newer than the ${maxGlibc} krunbox supports`);
}
const applets = execFileSync(busybox, ["--list-full"]).toString().split("\n").filter(Boolean);
fs.writeFileSync(path.join(tmp, "busybox.applets"), applets.join("\n") + "\n");

const pkg = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8"));
const dpkgVersion = (name) => execFileSync("dpkg-query", ["-W", "-f=${Version}", name]).toString();
// An unpacked (not installed) package's version, from its changelog's first line.
const unpackedVersion = (name) =>
  /\(([^)]+)\)/.exec(execFileSync("zcat", [path.join(debRoot, "usr/share/doc", name, "changelog.Debian.gz")]).toString())[1];
const virtiofsdVersion = fs.readFileSync(path.join(virtiofsdDir, "version"), "utf8").trim();
const vsockVersion = unpackedVersion("vhost-device-vsock");
const image = createHash("sha256");
for (const f of ["krunbox-agent", "busybox", "busybox.applets"]) image.update(fs.readFileSync(path.join(tmp, f)));
fs.writeFileSync(
  path.join(tmp, "versions.json"),
  JSON.stringify(
    {
      krunbox: pkg.version,
      kernel: {
        release,
        package: `linux-image-${release}`,
        source: "Debian source package linux",
        // Names the unpacked copy in ~/.krunbox/kernels.
        id: createHash("sha256").update(vmlinuxGz).digest("hex").slice(0, 16),
      },
      busybox: dpkgVersion("busybox-static"),
      virtiofsd: virtiofsdVersion,
      "vhost-device-vsock": `${vsockVersion} (Debian sid's vhost-device-vsock)`,
      glibc,
      image: image.digest("hex").slice(0, 16),
    },
    null,
    2,
  ) + "\n",
);

// License texts of what the runtime bundles.
const licenses = path.join(tmp, "licenses");
fs.mkdirSync(licenses);
const docs = [
  [path.join(debRoot, `usr/share/doc/linux-image-${release}/copyright`), "linux-kernel.copyright"],
  ["/usr/share/doc/busybox-static/copyright", "busybox.copyright"],
  ["/usr/share/doc/libc6/copyright", "glibc.copyright"],
  ["/usr/share/doc/nlohmann-json3-dev/copyright", "nlohmann-json.copyright"],
  ["/usr/share/common-licenses/GPL-2", "GPL-2.0.txt"],
  ["/usr/share/common-licenses/LGPL-2.1", "LGPL-2.1.txt"],
  ["/usr/share/common-licenses/Apache-2.0", "Apache-2.0.txt"],
  [path.join(debRoot, "usr/share/doc/vhost-device-vsock/copyright"), "vhost-device-vsock.copyright"],
  [path.join(debRoot, "usr/share/doc/libseccomp-dev/copyright"), "libseccomp.copyright"],
];
for (const [from, name] of docs) {
  if (!fs.existsSync(from)) fail(`${from} is missing (license text to bundle)`);
  fs.copyFileSync(from, path.join(licenses, name));
}
fs.cpSync(path.join(virtiofsdDir, "licenses"), path.join(licenses, "virtiofsd"), { recursive: true });
fs.writeFileSync(
  path.join(licenses, "README"),
  `What this runtime folder bundles, and where its source is:
- vmlinux.gz (the kernel image of Debian's vmlinuz, uncompressed and
  gzipped) and the kernel modules in initramfs.cpio: Linux ${release}, GPL-2.0
  (GPL-2.0.txt, linux-kernel.copyright), the binary of Debian's package
  linux-image-${release}. Source: Debian's source package "linux" of the
  same version (apt-get source linux).
- busybox: BusyBox ${dpkgVersion("busybox-static")}, GPL-2.0 (busybox.copyright),
  from Debian's busybox-static. Source: apt-get source busybox.
- krunbox-agent (also /init in initramfs.cpio) and krunbox-runner: krunbox,
  Apache-2.0, source in this package (src/). The agent is linked statically
  with the GNU C Library, LGPL-2.1-or-later (LGPL-2.1.txt, glibc.copyright):
  its source (apt-get source glibc) and krunbox's sources let you relink it.
  Both include nlohmann/json, MIT (nlohmann-json.copyright). The runner is
  linked statically with libseccomp ${unpackedVersion("libseccomp-dev")}, LGPL-2.1
  (libseccomp.copyright; source: apt-get source libseccomp).
- virtiofsd: ${virtiofsdVersion}, Apache-2.0 AND BSD-3-Clause, built by
  krunbox's scripts/build-virtiofsd.mjs from Debian's librust-*-dev crate
  sources; it links the crates listed in virtiofsd/ (one copyright file
  each, MIT and/or Apache-2.0 and others as they say) and, statically,
  libseccomp and libcap-ng (LGPL-2.1; virtiofsd/libseccomp.copyright,
  virtiofsd/libcap-ng.copyright; source: apt-get source libseccomp libcap-ng).
  Source: apt-get source rust-virtiofsd, and each crate's rust-<name> package.
- vhost-device-vsock: ${vsockVersion}, Apache-2.0 AND BSD-3-Clause
  (vhost-device-vsock.copyright), the binary of Debian's package
  vhost-device-vsock. Source: apt-get source rust-vhost-device-vsock.
`,
);

fs.rmSync(out, { recursive: true, force: true });
fs.renameSync(tmp, out);
console.log(`krunbox build-runtime: kernel ${release}, ${order.length + netOrder.length} modules, ` +
  `initramfs ${(cpio.length / 1048576).toFixed(1)} MiB -> ${path.relative(root, out)}`);
