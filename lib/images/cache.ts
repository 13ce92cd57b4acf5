// OCI images pulled from registries into a content-addressed cache:
//   ~/.krunbox/images/blobs/sha256/<hex>      verified blobs (layers, configs)
//   ~/.krunbox/images/oci/<manifest hex>/     image.json + rootfs/ (layers applied)
//   ~/.krunbox/images/refs/<sha256 of ref>    the manifest digest a reference last had
// Everything is assembled aside and renamed into place, so concurrent pulls
// of one image never see (or leave) half of it.
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { z } from "zod";
import { DigestMismatchError, ImageInUseError, ImageNotFoundError } from "../errors.js";
import { parseReference, type ImageReference } from "./reference.js";
import { Registry, sha256, type Descriptor } from "./registry.js";
import { applyLayer, UnpackBudget } from "./unpack.js";
import type { HostConnectionCheck } from "../network/address.js";
import { parseOptions } from "../validate.js";
import { loadNative } from "../vm/native.js";
import { krunboxHome } from "../vm/runtime.js";

export interface ImageConfig {
  env: string[];
  workingDir: string | undefined;
  user: string | undefined;
  entrypoint: string[];
  cmd: string[];
}

export interface PulledImage {
  /** Canonical reference: the one pulled (pullImage), or the one that first brought the image in (listImages). */
  reference: string;
  digest: string;
  rootfs: string;
  config: ImageConfig;
}

export interface PullProgress {
  layer: string;
  index: number;
  count: number;
  bytesDone: number;
  bytesTotal: number;
}

/** The pull options that a Sandbox's `image: { ref, ... }` takes too. */
export const imagePullFields = {
  /** "if-missing" (pull unless cached), "always" (check the registry), "never" (cache only). Default: "if-missing". */
  pullPolicy: z.enum(["if-missing", "always", "never"]).optional(),
  /** For the registry. Default: Docker's (~/.docker/config.json, its credHelpers and credsStore), else anonymous. */
  credentials: z.object({ username: z.string(), password: z.string() }).strict().optional(),
  /** Allow plain HTTP to a registry that is not on this machine. Default: false (loopback registries may use HTTP). */
  insecure: z.boolean().optional(),
  /** What the image's layers may write in all; past it, or past the cache's free space, the pull fails. Default: 16 GiB. */
  maxUnpackedBytes: z.number().int().min(1).optional(),
};
const pullOptionsSchema = z
  .object({
    ...imagePullFields,
    onProgress: z.custom<(p: PullProgress) => void>((f) => typeof f === "function", "must be a function").optional(),
  })
  .strict();
export type PullOptions = z.input<typeof pullOptionsSchema>;
const DEFAULT_MAX_UNPACKED_BYTES = 16 * 2 ** 30;

const dirs = () => {
  const base = path.join(krunboxHome(), "images");
  return { base, blobs: path.join(base, "blobs/sha256"), oci: path.join(base, "oci"), refs: path.join(base, "refs") };
};
const hex = (digest: string) => digest.slice("sha256:".length);
const refFile = (canonical: string) => path.join(dirs().refs, crypto.createHash("sha256").update(canonical).digest("hex"));

function readImage(digest: string): PulledImage | undefined {
  const dir = path.join(dirs().oci, hex(digest));
  try {
    return JSON.parse(fs.readFileSync(path.join(dir, "image.json"), "utf8")) as PulledImage;
  } catch {
    return undefined;
  }
}

function writeAtomically(file: string, text: string) {
  const tmp = `${file}.tmp-${process.pid}-${crypto.randomBytes(4).toString("hex")}`;
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, file);
}

/**
 * Pulls `reference` (pull policy "if-missing" by default) and returns the
 * cached image. `internal.checkConnection` (krunbox mcp) judges every
 * connection the pull makes.
 */
export async function pullImage(
  reference: string,
  pullOptions: PullOptions = {},
  internal: { checkConnection?: HostConnectionCheck } = {},
): Promise<PulledImage> {
  const options = parseOptions(pullOptionsSchema, pullOptions, "options");
  const ref = parseReference(reference);
  const d = dirs();
  for (const dir of [d.blobs, d.oci, d.refs]) fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const policy = options.pullPolicy ?? "if-missing";
  if (policy !== "always") {
    const known = ref.digest ?? (fs.existsSync(refFile(ref.canonical)) ? fs.readFileSync(refFile(ref.canonical), "utf8").trim() : undefined);
    const cached = known && readImage(known);
    if (cached) return { ...cached, reference: ref.canonical };
    if (policy === "never") throw new ImageNotFoundError(ref.canonical, `pullPolicy is "never"; pull it first`);
  }

  const registry = new Registry(ref, { ...options, checkConnection: internal.checkConnection });
  try {
    return await pull(ref, registry, options);
  } finally {
    await registry.close();
  }
}

async function pull(ref: ImageReference, registry: Registry, options: PullOptions): Promise<PulledImage> {
  const d = dirs();
  const manifest = await registry.manifest();
  let image = readImage(manifest.digest);
  if (!image) {
    const blob = async (desc: Descriptor, index: number, count: number) => {
      const file = path.join(d.blobs, hex(desc.digest));
      if (!fs.existsSync(file))
        await registry.blob(desc, file, (bytesDone) =>
          options.onProgress?.({ layer: desc.digest, index, count, bytesDone, bytesTotal: desc.size }),
        );
      options.onProgress?.({ layer: desc.digest, index, count, bytesDone: desc.size, bytesTotal: desc.size });
      return file;
    };
    const configFile = await blob(manifest.config, -1, manifest.layers.length);
    const raw = fs.readFileSync(configFile);
    if (sha256(raw) !== manifest.config.digest) throw new DigestMismatchError("the cached config blob", manifest.config.digest, sha256(raw));
    const c = ((JSON.parse(raw.toString("utf8")) as { config?: Record<string, unknown> }).config ?? {}) as {
      Env?: string[];
      WorkingDir?: string;
      User?: string;
      Entrypoint?: string[];
      Cmd?: string[];
    };
    const config: ImageConfig = {
      env: c.Env ?? [],
      workingDir: c.WorkingDir || undefined,
      user: c.User || undefined,
      entrypoint: c.Entrypoint ?? [],
      cmd: c.Cmd ?? [],
    };
    const final = path.join(d.oci, hex(manifest.digest));
    const tmp = fs.mkdtempSync(`${final}.tmp-`);
    try {
      const rootfs = path.join(tmp, "rootfs");
      fs.mkdirSync(rootfs, { mode: 0o755 });
      const budget = new UnpackBudget(options.maxUnpackedBytes ?? DEFAULT_MAX_UNPACKED_BYTES, d.oci);
      budget.checkFree(manifest.layers.reduce((n, l) => n + l.size, 0));
      for (const [i, layer] of manifest.layers.entries()) {
        const file = await blob(layer, i, manifest.layers.length);
        await applyLayer(rootfs, file, /zstd/.test(layer.mediaType) ? "zstd" : /gzip/.test(layer.mediaType) ? "gzip" : "none", budget);
      }
      image = { reference: ref.canonical, digest: manifest.digest, rootfs: path.join(final, "rootfs"), config };
      fs.writeFileSync(path.join(tmp, "image.json"), JSON.stringify(image, null, 2) + "\n");
      try {
        fs.renameSync(tmp, final);
      } catch (err) {
        // Another process finished the same image first: use theirs.
        if (!readImage(manifest.digest)) throw err;
      }
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  }
  if (!ref.digest) writeAtomically(refFile(ref.canonical), manifest.digest + "\n");
  // Another reference may have brought the same image in first.
  return { ...(readImage(manifest.digest) ?? image), reference: ref.canonical };
}

/** The images in the cache, with the references that point at them. */
export function listImages(): (PulledImage & { sizeBytes?: number })[] {
  const d = dirs();
  if (!fs.existsSync(d.oci)) return [];
  return fs
    .readdirSync(d.oci)
    .filter((name) => /^[a-f0-9]{64}$/.test(name))
    .map((name) => readImage(`sha256:${name}`))
    .filter((i): i is PulledImage => !!i);
}

const lockFile = (digest: string) => path.join(dirs().oci, `${hex(digest)}.lock`);

/** @internal Marks the image in use (a shared lock) until released. */
export function holdImage(digest: string): () => void {
  const fd = loadNative().flock(lockFile(digest), false);
  if (fd < 0) throw new ImageInUseError(digest); // only while it is being removed
  return () => loadNative().unlock(fd);
}

/** Removes an image (by reference or digest) from the cache; refused while a sandbox runs on it. */
export function removeImage(refOrDigest: string): boolean {
  const d = dirs();
  let digest = refOrDigest.startsWith("sha256:") ? refOrDigest : undefined;
  const ref = digest ? undefined : refFile(parseReference(refOrDigest).canonical);
  if (ref) {
    if (!fs.existsSync(ref)) return false;
    digest = fs.readFileSync(ref, "utf8").trim();
  }
  const dir = path.join(d.oci, hex(digest!));
  if (!fs.existsSync(dir)) return false;
  const lock = loadNative().flock(lockFile(digest!), true);
  if (lock < 0) throw new ImageInUseError(refOrDigest);
  try {
    if (ref) fs.rmSync(ref, { force: true });
    // Rename first, then delete: a half-deleted image is never found.
    const trash = `${dir}.rm-${process.pid}`;
    fs.renameSync(dir, trash);
    fs.rmSync(trash, { recursive: true, force: true });
    fs.rmSync(lockFile(digest!), { force: true });
  } finally {
    loadNative().unlock(lock);
  }
  return true;
}

/** Deletes blobs no cached image uses, and references to removed images. Returns bytes freed. */
export function pruneImages(): number {
  const d = dirs();
  if (!fs.existsSync(d.blobs)) return 0;
  let freed = 0;
  for (const name of fs.existsSync(d.refs) ? fs.readdirSync(d.refs) : []) {
    const target = fs.readFileSync(path.join(d.refs, name), "utf8").trim();
    if (!readImage(target)) fs.rmSync(path.join(d.refs, name), { force: true });
  }
  // Blobs are only needed to build images; what is unpacked no longer needs them.
  for (const name of fs.readdirSync(d.blobs)) {
    const file = path.join(d.blobs, name);
    freed += fs.statSync(file).size;
    fs.rmSync(file, { force: true });
  }
  return freed;
}
