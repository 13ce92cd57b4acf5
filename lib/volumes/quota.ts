// Hard quotas for named volumes. A volume with a quota keeps its data in an
// ext4 image (<volume>/disk.img) that is loop-mounted on the host at
// <volume>/data, so the host kernel enforces the limit for every writer:
// guests (through virtio-fs) and vol.fs alike. The guest's `df` shows the
// image's size, deleting files gives the space back, and the guest can't
// touch the image itself. Mounting needs root; the mount stays while the
// volume exists (re-made on first use after a reboot) and goes with
// Volume.remove.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { ConfigError, QuotaError, QuotaNotSupportedError, VolumeInUseError } from "../errors.js";
import { loadNative } from "../vm/native.js";

const MiB = 1024 * 1024;

function run(program: string, args: string[]): void {
  try {
    execFileSync(program, args, { stdio: ["ignore", "ignore", "pipe"] });
  } catch (err) {
    const stderr = String((err as { stderr?: Buffer }).stderr ?? "").trim();
    throw new QuotaError(`${program} ${args.join(" ")} failed: ${stderr || (err as Error).message}`);
  }
}

// e2fsck exits 1 when it fixed something (it re-creates lost+found, which
// krunbox removes); only 4 and up mean errors left behind.
function fsck(img: string): void {
  try {
    execFileSync("e2fsck", ["-f", "-p", img], { stdio: ["ignore", "ignore", "pipe"] });
  } catch (err) {
    const status = (err as { status?: number }).status ?? 8;
    if (status >= 4) throw new QuotaError(`e2fsck found errors it could not fix in ${img} (exit ${status})`);
  }
}

function requireRoot(): void {
  if (process.getuid?.() !== 0) throw new QuotaNotSupportedError("volume quotas need root (they are loop-mounted ext4 images); create the volume without quotaMiB");
}

const paths = (dir: string) => ({ img: path.join(dir, "disk.img"), data: path.join(dir, "data"), lock: path.join(dir, "mount.lock") });

export function isMounted(dir: string): boolean {
  const { data } = paths(dir);
  try {
    return fs.statSync(data).dev !== fs.statSync(dir).dev;
  } catch {
    return false;
  }
}

// One process at a time mounts or resizes a volume: two loop devices on one
// image would corrupt it.
async function withMountLock<T>(dir: string, fn: () => T): Promise<T> {
  const deadline = Date.now() + 10_000;
  let fd: number;
  while ((fd = loadNative().flock(paths(dir).lock, true)) < 0) {
    if (Date.now() > deadline) throw new QuotaError(`timed out waiting to mount ${dir}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  try {
    return fn();
  } finally {
    loadNative().unlock(fd);
  }
}

function mountPoint(dir: string): boolean {
  try {
    execFileSync("mountpoint", ["-q", dir], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

function mountNow(dir: string): void {
  const { img, data } = paths(dir);
  run("mount", ["-t", "ext4", "-o", "loop,nosuid,nodev", img, data]);
  // lost+found would show up in every guest; e2fsck recreates it if needed.
  fs.rmSync(path.join(data, "lost+found"), { recursive: true, force: true });
}

/** Makes <dir>/disk.img: an empty ext4 file system that offers `quotaMiB` (dir not yet in use). */
export function createDisk(dir: string, quotaMiB: number): void {
  requireRoot();
  const { img } = paths(dir);
  fs.closeSync(fs.openSync(img, "w", 0o600));
  fs.truncateSync(img, quotaMiB * MiB);
  // No reserved blocks: the whole quota is the guest's.
  run("mkfs.ext4", ["-q", "-F", "-m", "0", "-L", "krunbox", img]);
  fitImage(dir, quotaMiB);
}

// Grows the (unmounted) image until the file system itself offers quotaMiB:
// ext4's metadata comes on top of the quota, so `df` shows the quota.
function fitImage(dir: string, quotaMiB: number): void {
  const { img, data } = paths(dir);
  for (let i = 0; i < 4; i++) {
    mountNow(dir);
    const s = fs.statfsSync(data);
    run("umount", [data]);
    const missing = quotaMiB * MiB - s.blocks * s.bsize;
    if (missing <= 0) return;
    fs.truncateSync(img, fs.statSync(img).size + Math.ceil(missing / MiB) * MiB);
    fsck(img);
    run("resize2fs", ["-f", img]);
  }
}

/** Mounts the volume's image at its data folder unless it already is. */
export async function ensureMounted(dir: string): Promise<void> {
  if (isMounted(dir)) return;
  requireRoot();
  await withMountLock(dir, () => {
    if (isMounted(dir)) return;
    // Every VM runner copies the host's mounts into its own namespace. An
    // unmount reaches those copies only from under a shared mount, so the
    // volume folder becomes one (a bind mount of itself) first: a resize or
    // a removal never leaves the image mounted in another VM's runner.
    if (!mountPoint(dir)) {
      run("mount", ["--bind", dir, dir]);
      run("mount", ["--make-shared", dir]);
    }
    mountNow(dir);
  });
}

export async function unmount(dir: string): Promise<void> {
  await withMountLock(dir, () => {
    if (isMounted(dir)) run("umount", [paths(dir).data]);
    // Lazily: the volume's lock files, open right now, live in it.
    if (mountPoint(dir)) run("umount", ["-l", dir]);
  });
}

export function usedBytes(dir: string): number {
  const s = fs.statfsSync(paths(dir).data);
  return (s.blocks - s.bfree) * s.bsize;
}

/**
 * Changes the quota of an unused volume (`unused`: the caller holds its
 * exclusive lock), never below what it holds. Offline resizing works
 * everywhere; online growing would need CAP_SYS_RESOURCE.
 */
export async function resizeDisk(dir: string, quotaMiB: number, unused: boolean): Promise<void> {
  requireRoot();
  await ensureMounted(dir);
  const used = usedBytes(dir);
  if (quotaMiB * MiB <= used)
    throw new ConfigError("quotaMiB", `quotaMiB: ${quotaMiB} MiB is not above the ${Math.ceil(used / MiB)} MiB the volume holds; delete files first`);
  if (!unused)
    throw new VolumeInUseError(path.basename(dir), "changing a quota needs the volume unused: stop the sandboxes that mount it");
  const { img, data } = paths(dir);
  await withMountLock(dir, () => {
    // ext4's own metadata stays on top of the quota when shrinking too.
    const s = fs.statfsSync(data);
    const overheadMiB = Math.ceil((fs.statSync(img).size - s.blocks * s.bsize) / MiB);
    run("umount", [data]);
    try {
      fsck(img);
      const targetMiB = quotaMiB + overheadMiB;
      if (targetMiB * MiB < fs.statSync(img).size) {
        run("resize2fs", [img, `${targetMiB}M`]);
        fs.truncateSync(img, targetMiB * MiB);
      }
      fitImage(dir, quotaMiB);
    } finally {
      mountNow(dir);
    }
  });
}
