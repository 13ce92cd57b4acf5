// Where krunbox finds its own build outputs and the VMM programs.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import zlib from "node:zlib";
import { RuntimeNotBuiltError, VmmNotFoundError } from "../errors.js";

/** The package folder (this file is lib/vm/runtime.ts, or dist/vm/runtime.js). */
export const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

// Inside an Electron app.asar, native files live in app.asar.unpacked.
const nativeRoot = packageRoot.replace(/\.asar(?=[\\/])/, ".asar.unpacked");

/** krunbox's per-user state folder: $KRUNBOX_HOME, else ~/.krunbox. */
export function krunboxHome(): string {
  return process.env.KRUNBOX_HOME || path.join(os.homedir(), ".krunbox");
}

/**
 * The folder with krunbox's runtime files (runner, kernel, initramfs, the
 * default image's parts): $KRUNBOX_RUNTIME_DIR, for apps that unpack native
 * files elsewhere (Electron), else runtime/linux-x64 in the package.
 */
export function runtimeDir(): string {
  return process.env.KRUNBOX_RUNTIME_DIR || path.join(nativeRoot, "runtime", `${process.platform}-${process.arch}`);
}

export interface RuntimePaths {
  dir: string;
  runner: string;
  kernel: string;
  initrd: string;
}

export function runtimePaths(): RuntimePaths {
  const dir = runtimeDir();
  const paths = {
    dir,
    runner: path.join(dir, "krunbox-runner"),
    kernel: path.join(dir, "vmlinux.gz"),
    initrd: path.join(dir, "initramfs.cpio"),
  };
  for (const [name, file] of Object.entries(paths)) {
    if (!fs.existsSync(file))
      throw new RuntimeNotBuiltError(
        `krunbox ${name} not found at ${file}: ` +
          (process.env.KRUNBOX_RUNTIME_DIR
            ? "KRUNBOX_RUNTIME_DIR must point at a copy of the package's runtime/linux-x64 folder"
            : `krunbox supports linux-x64 only; in a source checkout run \`npm run setup\` in ${packageRoot}`),
      );
  }
  return paths;
}

interface RuntimeVersions {
  image: string;
  kernel: { release: string; id: string };
}

function runtimeVersions(): RuntimeVersions {
  return JSON.parse(fs.readFileSync(path.join(runtimePaths().dir, "versions.json"), "utf8")) as RuntimeVersions;
}

/**
 * The kernel QEMU boots: the runtime's vmlinux.gz, unpacked on first use to
 * ~/.krunbox/kernels/vmlinux-<id>. QEMU starts an uncompressed kernel at
 * its PVH entry point, which boots about 0.4 s sooner under TCG than the
 * bzImage it came from (that one decompresses itself at every boot).
 */
export function bootKernel(): string {
  const { kernel } = runtimePaths();
  const file = path.join(krunboxHome(), "kernels", `vmlinux-${runtimeVersions().kernel.id}`);
  if (fs.existsSync(file)) return file;
  fs.mkdirSync(path.dirname(file), { recursive: true });
  // Written aside, then renamed: concurrent first uses never boot half a kernel.
  const tmp = `${file}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
  try {
    fs.writeFileSync(tmp, zlib.gunzipSync(fs.readFileSync(kernel)), { mode: 0o644 });
    fs.renameSync(tmp, file);
  } finally {
    fs.rmSync(tmp, { force: true });
  }
  return file;
}

/** The addon: $KRUNBOX_RUNTIME_DIR/krunbox.node if present, else the package's prebuild or build. */
export function addonPath(): string {
  const relocated = process.env.KRUNBOX_RUNTIME_DIR && path.join(process.env.KRUNBOX_RUNTIME_DIR, "krunbox.node");
  if (relocated && fs.existsSync(relocated)) return relocated;
  const require = createRequire(import.meta.url);
  return (require("node-gyp-build") as { resolve(dir: string): string }).resolve(nativeRoot);
}

function onPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(path.delimiter)) {
    const file = path.join(dir, name);
    try {
      fs.accessSync(file, fs.constants.X_OK);
      return file;
    } catch {
      // keep looking
    }
  }
  return undefined;
}

/** A program the qemu backend runs, and where krunbox found it. */
export interface HostProgram {
  path: string;
  /** "bundled" (the runtime folder), "PATH", or the variable that named it. */
  from: "bundled" | "PATH" | "KRUNBOX_QEMU" | "KRUNBOX_VIRTIOFSD" | "KRUNBOX_VSOCK_DAEMON";
}

export interface HostPrograms {
  qemu: HostProgram;
  virtiofsd: HostProgram;
  vsockDaemon: HostProgram;
}

/** A KRUNBOX_* override, which must name an existing program. */
function override(variable: "KRUNBOX_QEMU" | "KRUNBOX_VIRTIOFSD" | "KRUNBOX_VSOCK_DAEMON"): HostProgram | undefined {
  const file = process.env[variable];
  if (!file) return undefined;
  if (!fs.existsSync(file)) throw new VmmNotFoundError(`${variable} is set to ${file}, which does not exist: fix it or unset it`);
  return { path: file, from: variable };
}

// virtiofsd versions already checked, by path.
const rustVirtiofsd = new Set<string>();

/**
 * krunbox drives the Rust virtiofsd's command line. A system copy named by
 * KRUNBOX_VIRTIOFSD must be one: the C virtiofsd of QEMU <= 8.0 has no
 * capability control krunbox relies on.
 */
function requireRustVirtiofsd(file: string): void {
  if (rustVirtiofsd.has(file)) return;
  let version = "";
  try {
    version = execFileSync(file, ["--version"], { encoding: "utf8", timeout: 5000, stdio: ["ignore", "pipe", "pipe"] });
  } catch {
    // reported below
  }
  if (!/^virtiofsd [1-9]\d*\./.test(version))
    throw new VmmNotFoundError(
      `KRUNBOX_VIRTIOFSD is set to ${file}` +
        (version ? ` (${version.split("\n")[0].trim()})` : "") +
        ", which is not the Rust virtiofsd (version 1.x) krunbox needs (the C virtiofsd that came with QEMU 7.2 and older " +
        "is not supported): point it at the Rust virtiofsd, or unset it to use the one krunbox ships",
    );
  rustVirtiofsd.add(file);
}

/**
 * QEMU from the system (KRUNBOX_QEMU, else PATH); virtiofsd and
 * vhost-device-vsock from the runtime folder unless KRUNBOX_VIRTIOFSD /
 * KRUNBOX_VSOCK_DAEMON name system copies.
 */
export function hostPrograms(): HostPrograms {
  const fromPath = onPath("qemu-system-x86_64");
  const qemu: HostProgram | undefined = override("KRUNBOX_QEMU") ?? (fromPath ? { path: fromPath, from: "PATH" } : undefined);
  if (!qemu)
    throw new VmmNotFoundError(
      "qemu-system-x86_64 not found. Install it: Debian/Ubuntu `apt-get install qemu-system-x86`, " +
        "Fedora `dnf install qemu-system-x86-core`, Arch `pacman -S qemu-base`; or set KRUNBOX_QEMU.",
    );
  const { dir } = runtimePaths();
  const virtiofsd = override("KRUNBOX_VIRTIOFSD") ?? { path: path.join(dir, "virtiofsd"), from: "bundled" };
  if (virtiofsd.from !== "bundled") requireRustVirtiofsd(virtiofsd.path);
  const vsockDaemon = override("KRUNBOX_VSOCK_DAEMON") ?? { path: path.join(dir, "vhost-device-vsock"), from: "bundled" };
  for (const p of [virtiofsd, vsockDaemon])
    if (!fs.existsSync(p.path)) throw new RuntimeNotBuiltError(`${p.path} is missing from krunbox's runtime folder: reinstall krunbox`);
  return { qemu, virtiofsd, vsockDaemon };
}

export interface QemuPrograms {
  qemuPath: string;
  virtiofsdPath: string;
  vsockDaemonPath: string;
}

/** The three programs' paths, as the runner's config takes them. */
export function qemuPrograms(): QemuPrograms {
  const p = hostPrograms();
  return { qemuPath: p.qemu.path, virtiofsdPath: p.virtiofsd.path, vsockDaemonPath: p.vsockDaemon.path };
}

/** Where the result of an automatic KVM probe is remembered for this host kernel. */
export function accelCachePath(): string {
  const dir = krunboxHome();
  fs.mkdirSync(dir, { recursive: true });
  return path.join(dir, `accel-${os.release()}.txt`);
}

// The default image's /etc: users, and names that work without DNS (with
// no network, "localhost" still resolves).
const defaultEtc: Record<string, string> = {
  passwd: "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
  group: "root:x:0:\nnogroup:x:65534:\n",
  hosts: "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
};

/**
 * The default image (busybox from Debian's busybox-static plus the agent)
 * in krunbox's home: ~/.krunbox/images/default-<content hash>, assembled
 * from the runtime folder on first use. Sandboxes share it read-only; each
 * gets a copy-on-write root.
 */
export function defaultImage(): string {
  const { dir: runtime } = runtimePaths();
  const id = runtimeVersions().image;
  const etcId = createHash("sha256").update(JSON.stringify(defaultEtc)).digest("hex").slice(0, 8);
  const dir = path.join(krunboxHome(), "images", `default-${id}-${etcId}`);
  if (fs.existsSync(dir)) return dir;
  fs.mkdirSync(path.dirname(dir), { recursive: true });
  // Build aside, then rename: concurrent first uses never see half an image.
  const tmp = fs.mkdtempSync(`${dir}.tmp-`);
  try {
    for (const d of ["bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp", "run", "mnt", "root", "home", "var"])
      fs.mkdirSync(path.join(tmp, d), { recursive: true });
    fs.chmodSync(path.join(tmp, "tmp"), 0o1777);
    fs.copyFileSync(path.join(runtime, "busybox"), path.join(tmp, "bin/busybox"));
    fs.chmodSync(path.join(tmp, "bin/busybox"), 0o755);
    for (const applet of fs.readFileSync(path.join(runtime, "busybox.applets"), "utf8").split("\n")) {
      if (!/^[a-z0-9_./-]+$/i.test(applet) || applet.includes("..") || applet === "bin/busybox") continue;
      const link = path.join(tmp, applet);
      fs.mkdirSync(path.dirname(link), { recursive: true });
      if (!fs.existsSync(link)) fs.symlinkSync(path.relative(path.dirname(link), path.join(tmp, "bin/busybox")), link);
    }
    fs.copyFileSync(path.join(runtime, "krunbox-agent"), path.join(tmp, "sbin/krunbox-agent"));
    fs.chmodSync(path.join(tmp, "sbin/krunbox-agent"), 0o755);
    for (const [name, text] of Object.entries(defaultEtc)) fs.writeFileSync(path.join(tmp, "etc", name), text);
    fs.chmodSync(tmp, 0o755);
    fs.renameSync(tmp, dir);
  } catch (err) {
    fs.rmSync(tmp, { recursive: true, force: true });
    if (!fs.existsSync(dir)) throw err;
  }
  return dir;
}
