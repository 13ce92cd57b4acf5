// What a sandbox boots as its root, from its `image` option: the default
// image (nothing to do), a local root folder, a disk image, or an OCI image,
// pulled if need be, whose config supplies default env, workdir and user.
import fs from "node:fs";
import path from "node:path";
import { ConfigError } from "../errors.js";
import { pullImage } from "../images/cache.js";
import { resolveDiskImage } from "../images/disk.js";
import type { ResolvedSandboxOptions } from "./options.js";

/** Fills in `resolved.root`, `rootDisk`, `imageDigest` and the image's defaults. */
export async function resolveRoot(resolved: ResolvedSandboxOptions, workdirGiven: boolean): Promise<void> {
  const image = resolved.image;
  if (image && typeof image === "object" && "dir" in image) {
    const dir = path.resolve(image.dir);
    if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory())
      throw new ConfigError("image.dir", `image.dir: root folder ${dir} does not exist`);
    resolved.root = dir;
  } else if (image && typeof image === "object" && "disk" in image) {
    resolved.rootDisk = resolveDiskImage(image);
  } else if (image) {
    // An OCI image: its config's Env, WorkingDir and User become defaults.
    const { ref, ...pull } = typeof image === "string" ? { ref: image } : image;
    const pulled = await pullImage(ref, pull);
    resolved.root = pulled.rootfs;
    resolved.imageDigest = pulled.digest;
    const imageEnv = Object.fromEntries(pulled.config.env.map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)]));
    resolved.env = { ...imageEnv, ...resolved.env };
    if (!workdirGiven && pulled.config.workingDir) resolved.workdir = pulled.config.workingDir;
    resolved.user ??= pulled.config.user || undefined;
  }
}
