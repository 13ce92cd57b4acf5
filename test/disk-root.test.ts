// Disk images as roots (`image: { disk }`), on real VMs: raw and qcow2
// images that mkfs.ext4, mkfs.erofs, sfdisk and qemu-img build from the
// default image's busybox root, whole-disk and partitioned.
import { execFileSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { ConfigError, GuestSetupError, Sandbox } from "../lib/index.js";
import { defaultImage } from "../lib/vm/runtime.js";
import { tempDir } from "./helpers.js";

const MiB = 1 << 20;
const sha256 = (file: string) => crypto.createHash("sha256").update(fs.readFileSync(file)).digest("hex");
const run = (cmd: string, args: string[]) => execFileSync(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });

let dir: string;
let busyboxRoot: string;

// An ext4 file system made from `from`, `sizeMiB` large, at `offsetBytes` in `image`.
function ext4(image: string, from: string, sizeMiB: number, offsetBytes = 0) {
  run("mkfs.ext4", ["-q", "-F", "-d", from, ...(offsetBytes ? ["-E", `offset=${offsetBytes}`] : []), image, `${sizeMiB}M`]);
}

// A disk with a partition table (sfdisk's `label`): partition 1 a /boot-like
// ext4 without /etc, partition 2 the busybox root.
function partitioned(label: "dos" | "gpt"): string {
  const image = path.join(dir, `parts-${label}.raw`);
  fs.writeFileSync(image, Buffer.alloc(0));
  fs.truncateSync(image, 48 * MiB);
  execFileSync("sfdisk", ["-q", image], { input: `label: ${label}\nstart=1MiB, size=8MiB\nstart=9MiB, size=32MiB\n` });
  const boot = path.join(dir, "boot");
  fs.mkdirSync(boot, { recursive: true });
  fs.writeFileSync(path.join(boot, "vmlinuz-marker"), "boot partition");
  ext4(image, boot, 8, 1 * MiB);
  ext4(image, busyboxRoot, 32, 9 * MiB);
  return image;
}

beforeAll(() => {
  dir = tempDir("krunbox-disk-");
  busyboxRoot = path.join(dir, "root");
  fs.cpSync(defaultImage(), busyboxRoot, { recursive: true, verbatimSymlinks: true });
  fs.writeFileSync(path.join(busyboxRoot, "etc/marker"), "from the disk image\n");
});

describe("a whole-disk ext4 image", () => {
  let raw: string;
  beforeAll(() => {
    raw = path.join(dir, "root.raw");
    ext4(raw, busyboxRoot, 32);
  });

  it("is the root, copy-on-write per sandbox, and never changes", async () => {
    const before = sha256(raw);
    await using a = await Sandbox.create({ image: { disk: raw } });
    await using b = await Sandbox.create({ image: { disk: raw } });
    expect((await a.exec("cat", ["/etc/marker"])).stdout).toBe("from the disk image\n");
    await a.exec("sh", ["-c", "echo mine > /etc/marker && echo new > /created"]);
    expect((await a.exec("cat", ["/etc/marker", "/created"])).stdout).toBe("mine\nnew\n");
    // The other sandbox on the same image sees none of it.
    expect((await b.exec("sh", ["-c", "cat /etc/marker; test -e /created && echo seen || echo absent"])).stdout).toBe(
      "from the disk image\nabsent\n",
    );
    // The guest's root can't write the disk itself either: QEMU opened it read-only.
    const direct = await a.exec("sh", ["-c", "echo x | dd of=/dev/vda bs=512 count=1 conv=notrunc 2>&1; echo rc=$?"]);
    expect(direct.stdout).toMatch(/rc=1/);
    await a.stop();
    await b.stop();
    expect(sha256(raw)).toBe(before);
  });

  it("works as a qcow2 image too, its format read from the file", async () => {
    const qcow2 = path.join(dir, "root.qcow2");
    run("qemu-img", ["convert", "-O", "qcow2", raw, qcow2]);
    await using sb = await Sandbox.create({ image: { disk: qcow2 } });
    expect((await sb.exec("cat", ["/etc/marker"])).stdout).toBe("from the disk image\n");
    // A qcow2 file is far smaller than the disk it holds: the guest sees the whole disk.
    expect(Number((await sb.exec("cat", ["/sys/block/vda/size"])).stdout) * 512).toBe(32 * MiB);
  });
});

it("finds the root partition of a partitioned disk (MBR and GPT), or takes the one asked for", async () => {
  for (const label of ["dos", "gpt"] as const) {
    const image = partitioned(label);
    await using sb = await Sandbox.create({ image: { disk: image } });
    expect((await sb.exec("cat", ["/etc/marker"])).stdout).toBe("from the disk image\n");
    await sb.stop();
  }
  const image = partitioned("gpt");
  // Partition 1 holds no shell: a command that needs nothing from the root shows it is the root.
  await using boot = await Sandbox.create({ image: { disk: image, partition: 1 } });
  expect(await boot.fs.readFile("/vmlinuz-marker", "utf8")).toBe("boot partition");
});

it("boots an erofs image", async () => {
  const image = path.join(dir, "root.erofs");
  run("mkfs.erofs", ["--all-root", image, busyboxRoot]);
  await using sb = await Sandbox.create({ image: { disk: image } });
  expect((await sb.exec("cat", ["/etc/marker"])).stdout).toBe("from the disk image\n");
  expect((await sb.exec("sh", ["-c", "echo w > /w && cat /w"])).stdout).toBe("w\n");
});

it("fails with a typed error that names the problem when the disk holds no root", async () => {
  const blank = path.join(dir, "blank.raw");
  fs.writeFileSync(blank, "");
  fs.truncateSync(blank, 16 * MiB);
  const err = await Sandbox.create({ image: { disk: blank } }).catch((e) => e);
  expect(err).toBeInstanceOf(GuestSetupError);
  expect(err.message).toMatch(/holds no ext2\/3\/4, erofs or squashfs file system/);
  const missing = await Sandbox.create({ image: { disk: partitioned("dos"), partition: 7 } }).catch((e) => e);
  expect(missing).toBeInstanceOf(GuestSetupError);
  expect(missing.message).toMatch(/has no partition 7/);
});

it("checks the option before anything starts", async () => {
  await expect(Sandbox.create({ image: { disk: path.join(dir, "nope.raw") } })).rejects.toMatchObject({ field: "image.disk" });
  await expect(Sandbox.create({ image: { disk: dir } })).rejects.toMatchObject({ field: "image.disk" });
  await expect(Sandbox.create({ image: { disk: "x.raw", partition: 0 } })).rejects.toMatchObject({ field: "image.partition" });
  await expect(Sandbox.create({ image: { disk: "x.raw", format: "vmdk" as "raw" } })).rejects.toBeInstanceOf(ConfigError);
});
