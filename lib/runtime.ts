// Where krunbox finds its own build outputs and the VMM programs.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { RuntimeNotBuiltError, VmmNotFoundError } from "./errors.js";

/** The package folder (lib/ and dist/ both sit directly inside it). */
export const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

/** krunbox's per-user state folder: $KRUNBOX_HOME, else ~/.krunbox. */
export function krunboxHome(): string {
  return process.env.KRUNBOX_HOME || path.join(os.homedir(), ".krunbox");
}

export interface RuntimePaths {
  runner: string;
  kernel: string;
  initrd: string;
  /** The default image as built into the package (see defaultImage()). */
  rootfs: string;
}

export function runtimePaths(): RuntimePaths {
  const paths = {
    runner: path.join(packageRoot, "build/Release/krunbox-runner"),
    kernel: path.join(packageRoot, "deps/out/vmlinuz"),
    initrd: path.join(packageRoot, "deps/out/initramfs.cpio"),
    rootfs: path.join(packageRoot, "deps/out/rootfs"),
  };
  for (const [name, file] of Object.entries(paths)) {
    if (!fs.existsSync(file))
      throw new RuntimeNotBuiltError(`krunbox ${name} not found at ${file}: run \`npm run setup\` in ${packageRoot}`);
  }
  return paths;
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
        "Debian sid/Ubuntu `apt-get install vhost-device-vsock`, Fedora `dnf install vhost-device-vsock`; " +
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

/**
 * The default image (busybox + the agent) in krunbox's home:
 * ~/.krunbox/images/default-<content hash>, copied from the package on
 * first use. Sandboxes share it read-only; each gets a copy-on-write root.
 */
export function defaultImage(): string {
  const { rootfs } = runtimePaths();
  const id = fs.readFileSync(`${rootfs}.id`, "utf8").trim();
  const dir = path.join(krunboxHome(), "images", `default-${id}`);
  if (fs.existsSync(dir)) return dir;
  fs.mkdirSync(path.dirname(dir), { recursive: true });
  // Copy aside, then rename: concurrent first uses never see half an image.
  const tmp = fs.mkdtempSync(`${dir}.tmp-`);
  try {
    fs.cpSync(rootfs, tmp, { recursive: true, verbatimSymlinks: true, preserveTimestamps: true });
    fs.renameSync(tmp, dir);
  } catch (err) {
    fs.rmSync(tmp, { recursive: true, force: true });
    if (!fs.existsSync(dir)) throw err;
  }
  return dir;
}
