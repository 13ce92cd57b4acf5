// Where krunbox finds its own build outputs and the VMM programs.
import { createHash } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
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
    kernel: path.join(dir, "vmlinuz"),
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

function firstExisting(candidates: (string | undefined)[]): string | undefined {
  return candidates.find((f): f is string => !!f && fs.existsSync(f));
}

export interface QemuPrograms {
  qemuPath: string;
  virtiofsdPath: string;
  vsockDaemonPath: string;
}

/** Finds QEMU and its two vhost-user daemons, or says which package to install. */
export function qemuPrograms(): QemuPrograms {
  const qemuPath = firstExisting([process.env.KRUNBOX_QEMU, onPath("qemu-system-x86_64")]);
  if (!qemuPath)
    throw new VmmNotFoundError(
      "qemu-system-x86_64 not found. Install it: Debian/Ubuntu `apt-get install qemu-system-x86`, " +
        "Fedora `dnf install qemu-system-x86-core`, Arch `pacman -S qemu-base`; or set KRUNBOX_QEMU.",
    );
  const virtiofsdPath = firstExisting([
    process.env.KRUNBOX_VIRTIOFSD,
    "/usr/libexec/virtiofsd",
    "/usr/lib/virtiofsd",
    "/usr/lib/qemu/virtiofsd",
    onPath("virtiofsd"),
  ]);
  if (!virtiofsdPath)
    throw new VmmNotFoundError(
      "virtiofsd not found. Install it: Debian 12 `apt-get install qemu-system-common`, newer Debian/Ubuntu " +
        "`apt-get install virtiofsd`, Fedora `dnf install virtiofsd`, Arch `pacman -S virtiofsd`; or set KRUNBOX_VIRTIOFSD.",
    );
  const vsockDaemonPath = firstExisting([
    process.env.KRUNBOX_VSOCK_DAEMON,
    path.join(packageRoot, "deps/debian/root/usr/bin/vhost-device-vsock"),
    onPath("vhost-device-vsock"),
  ]);
  if (!vsockDaemonPath)
    throw new VmmNotFoundError(
      "vhost-device-vsock not found. Run `npm run setup` (it fetches Debian's package), or install it: " +
        "Debian sid/Ubuntu `apt-get install vhost-device-vsock`, Fedora `dnf install vhost-device-vsock`, " +
        "Arch: the AUR package vhost-device-vsock; " +
        "or set KRUNBOX_VSOCK_DAEMON.",
    );
  return { qemuPath, virtiofsdPath, vsockDaemonPath };
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
  const id = (JSON.parse(fs.readFileSync(path.join(runtime, "versions.json"), "utf8")) as { image: string }).image;
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
