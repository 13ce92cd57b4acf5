// Disk images as roots: `image: { disk: "/path/root.qcow2" }`. The VM opens
// the image read-only (each sandbox writes to its own copy-on-write layer in
// the guest), so one image serves any number of sandboxes and never changes.
import fs from "node:fs";
import path from "node:path";
import { z } from "zod";
import { ConfigError } from "../errors.js";

export const diskImageSchema = z
  .object({
    /** A raw or qcow2 disk image holding an ext2/3/4, erofs or squashfs file system. */
    disk: z.string().min(1),
    /** Read from the file when absent: qcow2 by its magic, raw otherwise. */
    format: z.enum(["raw", "qcow2"]).optional(),
    /** The partition with the root; default: the whole disk's file system, else the first partition holding /etc. */
    partition: z.number().int().min(1).max(128).optional(),
  })
  .strict();
export type DiskImageOption = z.input<typeof diskImageSchema>;

/** What the runner gets (VmOptions.rootDisk). */
export interface RootDisk {
  path: string;
  format: "raw" | "qcow2";
  partition?: number;
}

const QCOW2_MAGIC = Buffer.from([0x51, 0x46, 0x49, 0xfb]); // "QFI\xfb"

/**
 * Checks the image and settles its format. Reading the format from the
 * file is safe here: the VM never writes to it, so no guest can turn a raw
 * image into a qcow2 one that names other host files as its backing.
 */
export function resolveDiskImage(image: DiskImageOption): RootDisk {
  const file = path.resolve(image.disk);
  let stat: fs.Stats;
  try {
    stat = fs.statSync(file);
  } catch {
    throw new ConfigError("image.disk", `image.disk: disk image ${file} does not exist`);
  }
  if (!stat.isFile()) throw new ConfigError("image.disk", `image.disk: ${file} is not a file (give a raw or qcow2 disk image)`);
  let format = image.format;
  if (!format) {
    const head = Buffer.alloc(4);
    const fd = fs.openSync(file, "r");
    try {
      fs.readSync(fd, head, 0, 4, 0);
    } finally {
      fs.closeSync(fd);
    }
    format = head.equals(QCOW2_MAGIC) ? "qcow2" : "raw";
  }
  return { path: file, format, ...(image.partition ? { partition: image.partition } : {}) };
}
