// Volumes: bind mounts of host folders, named volumes that krunbox keeps
// under ~/.krunbox/volumes, and size-limited tmpfs mounts.
import fs from "node:fs";
import path from "node:path";
import { z } from "zod";
import { ConfigError, FsError, PathEscapeError, QuotaNotSupportedError, VolumeExistsError, VolumeInUseError, VolumeNotFoundError } from "../errors.js";
import { loadNative } from "../vm/native.js";
import { createDisk, ensureMounted, resizeDisk, unmount } from "./quota.js";
import { krunboxHome } from "../vm/runtime.js";
import { parseOptions } from "../validate.js";

export interface VolumeInfo {
  name: string;
  created: string;
  labels: Record<string, string>;
  /** Hard limit in MiB, enforced by the host kernel (see lib/quota.ts). */
  quotaMiB?: number;
  /** The host folder the guest sees. */
  path: string;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
export const VOLUME_NAME_RULE =
  "volume names are 1-64 characters of letters, digits, '_', '.' and '-', starting with a letter or digit, without \"..\"";
export const isVolumeName = (name: unknown): name is string => typeof name === "string" && NAME.test(name) && !name.includes("..");

export function checkVolumeName(name: unknown, field: string): string {
  if (!isVolumeName(name)) throw new ConfigError(field, `${field}: ${VOLUME_NAME_RULE} (got ${JSON.stringify(name)})`);
  return name;
}

const quotaSchema = z.number().int().min(16).max(16 << 20);
const createOptionsSchema = z
  .object({
    quotaMiB: quotaSchema.optional(),
    labels: z.record(z.string().min(1, "label names must not be empty"), z.string()).default({}),
  })
  .strict();
const writeFileOptionsSchema = z.object({ mode: z.number().int().min(0).max(0o7777).default(0o644) }).strict();

// volume.json is replaced whole (write aside, then rename): readers never see half of it.
function writeMeta(dir: string, info: VolumeInfo): void {
  const { name, created, labels, quotaMiB } = info;
  const tmp = path.join(dir, `.volume.json.${process.pid}`);
  fs.writeFileSync(tmp, JSON.stringify({ name, created, labels, quotaMiB }, null, 2) + "\n");
  fs.renameSync(tmp, path.join(dir, "volume.json"));
}

function volumesDir(): string {
  return path.join(krunboxHome(), "volumes");
}

// <name>/data is what guests see; volume.json and lock stay out of their reach.
const layout = (name: string) => {
  const dir = path.join(volumesDir(), name);
  return { dir, data: path.join(dir, "data"), meta: path.join(dir, "volume.json"), lock: path.join(dir, "lock") };
};

// A path inside a volume, relative and normalized; ".." that would climb
// out is refused here, symlinks by the kernel (openat2 RESOLVE_BENEATH).
function inside(p: string): string {
  if (typeof p !== "string" || p.includes("\0")) throw new ConfigError("path", "path: must be a string without NUL");
  const rel = path.posix.normalize(`/${p}`).slice(1);
  if (rel.split("/").includes("..")) throw new PathEscapeError(p);
  return rel;
}

function fsCall<T>(p: string, op: () => T): T {
  try {
    return op();
  } catch (err) {
    const e = err as { code?: string; errno?: number; message?: string };
    if (e.code === "ERR_KRUNBOX_PATH_ESCAPE") throw new PathEscapeError(p);
    if (e.code === "ERR_KRUNBOX_FS") throw new FsError(e.message ?? "file operation failed");
    throw err;
  }
}

/** Host-side file access to a volume that never leaves it, whatever the guest put there. */
export class VolumeFs {
  constructor(
    private readonly root: string,
    private readonly ready: () => Promise<void>,
  ) {}

  async readFile(p: string): Promise<Buffer>;
  async readFile(p: string, encoding: BufferEncoding): Promise<string>;
  async readFile(p: string, encoding?: BufferEncoding): Promise<Buffer | string> {
    await this.ready();
    const data = fsCall(p, () => loadNative().readFileBeneath(this.root, inside(p)));
    return encoding ? data.toString(encoding) : data;
  }

  async writeFile(p: string, data: string | Uint8Array, options: { mode?: number } = {}): Promise<void> {
    const { mode } = parseOptions(writeFileOptionsSchema, options, "options");
    const rel = inside(p);
    if (!rel) throw new ConfigError("path", "path: names the volume's root folder, not a file");
    await this.ready();
    fsCall(p, () => loadNative().writeFileBeneath(this.root, rel, Buffer.from(data), mode));
  }

  async readdir(p = "/"): Promise<{ name: string; type: "file" | "directory" | "symlink" | "other" }[]> {
    await this.ready();
    return fsCall(p, () => loadNative().readdirBeneath(this.root, inside(p)));
  }

  async mkdir(p: string, options: { recursive?: boolean } = {}): Promise<void> {
    const rel = inside(p);
    const parts = rel.split("/").filter(Boolean);
    await this.ready();
    for (let i = options.recursive ? 1 : parts.length; i <= parts.length; i++)
      fsCall(p, () => loadNative().mkdirBeneath(this.root, parts.slice(0, i).join("/")));
  }

  async rm(p: string, options: { recursive?: boolean; force?: boolean } = {}): Promise<void> {
    const rel = inside(p);
    if (!rel) throw new ConfigError("path", "path: cannot remove the volume's root folder; use Volume.remove");
    await this.ready();
    try {
      fsCall(p, () => loadNative().rmBeneath(this.root, rel, options.recursive ?? false));
    } catch (err) {
      if (!(options.force && /No such file/.test((err as Error).message))) throw err;
    }
  }
}

export class Volume {
  readonly fs: VolumeFs;
  private constructor(readonly info: VolumeInfo) {
    this.fs = new VolumeFs(info.path, () => this.ready());
  }

  /** Makes the volume usable (mounts a quota'd volume's image after a reboot). */
  async ready(): Promise<void> {
    if (this.info.quotaMiB !== undefined) await ensureMounted(layout(this.name).dir);
  }

  /**
   * Changes the quota of a volume created with one: growing works while
   * sandboxes use it, shrinking needs it unused; never below what it holds.
   */
  async setQuota(quotaMiB: number): Promise<void> {
    parseOptions(quotaSchema, quotaMiB, "quotaMiB");
    if (this.info.quotaMiB === undefined)
      throw new QuotaNotSupportedError(`volume "${this.name}" was created without a quota; recreate it with quotaMiB`);
    const { dir, lock } = layout(this.name);
    const lockFd = loadNative().flock(lock, true);
    try {
      await resizeDisk(dir, quotaMiB, lockFd >= 0);
    } finally {
      loadNative().unlock(lockFd);
    }
    this.info.quotaMiB = quotaMiB;
    writeMeta(dir, this.info);
  }
  get name(): string {
    return this.info.name;
  }

  /** Creates a volume; VolumeExistsError if it exists (two racing creators: one wins). */
  static async create(name: string, options: { quotaMiB?: number; labels?: Record<string, string> } = {}): Promise<Volume> {
    checkVolumeName(name, "name");
    const { quotaMiB, labels } = parseOptions(createOptionsSchema, options, "");
    const { dir } = layout(name);
    fs.mkdirSync(volumesDir(), { recursive: true, mode: 0o700 });
    // Assemble aside, then rename into place: rename of a folder onto an
    // existing one fails, so exactly one of two racing creators wins.
    const tmp = fs.mkdtempSync(path.join(volumesDir(), `.new-${name}-`));
    const info: VolumeInfo = { name, created: new Date().toISOString(), labels, quotaMiB, path: layout(name).data };
    try {
      fs.mkdirSync(path.join(tmp, "data"), { mode: 0o755 });
      if (info.quotaMiB !== undefined) createDisk(tmp, info.quotaMiB);
      writeMeta(tmp, info);
      if (fs.existsSync(dir)) throw new VolumeExistsError(name);
      fs.renameSync(tmp, dir);
    } catch (err) {
      fs.rmSync(tmp, { recursive: true, force: true });
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOTEMPTY" || code === "EEXIST") throw new VolumeExistsError(name);
      throw err;
    }
    const vol = new Volume(info);
    try {
      await vol.ready();
    } catch (err) {
      fs.rmSync(dir, { recursive: true, force: true }); // nothing half-created
      throw err;
    }
    return vol;
  }

  static async get(name: string): Promise<Volume> {
    checkVolumeName(name, "name");
    const { meta, data } = layout(name);
    let raw: string;
    try {
      raw = fs.readFileSync(meta, "utf8");
    } catch {
      throw new VolumeNotFoundError(name);
    }
    const m = JSON.parse(raw) as { created: string; labels?: Record<string, string>; quotaMiB?: number };
    return new Volume({ name, created: m.created, labels: m.labels ?? {}, quotaMiB: m.quotaMiB, path: data });
  }

  /** Gets the volume, creating it if absent (safe against concurrent creators). */
  static async ensure(name: string): Promise<Volume> {
    try {
      return await Volume.get(name);
    } catch (err) {
      if (!(err instanceof VolumeNotFoundError)) throw err;
    }
    try {
      return await Volume.create(name);
    } catch (err) {
      if (err instanceof VolumeExistsError) return Volume.get(name);
      throw err;
    }
  }

  static async list(): Promise<VolumeInfo[]> {
    if (!fs.existsSync(volumesDir())) return [];
    const out: VolumeInfo[] = [];
    for (const name of fs.readdirSync(volumesDir()).sort()) {
      if (!NAME.test(name)) continue;
      try {
        out.push((await Volume.get(name)).info);
      } catch {
        // half-removed or foreign entry
      }
    }
    return out;
  }

  /** Removes a volume and its data; refused while a sandbox uses it, unless force. */
  static async remove(name: string, options: { force?: boolean } = {}): Promise<void> {
    const vol = await Volume.get(name);
    const lockFd = loadNative().flock(layout(vol.name).lock, true);
    if (lockFd < 0 && !options.force) throw new VolumeInUseError(name);
    try {
      if (vol.info.quotaMiB !== undefined) await unmount(layout(vol.name).dir);
      loadNative().rmBeneath(volumesDir(), vol.name, true);
    } finally {
      loadNative().unlock(lockFd);
    }
  }

  /** @internal Holds the volume as in use (a shared lock) until released. */
  static hold(name: string): () => void {
    const fd = loadNative().flock(layout(name).lock, false);
    if (fd < 0) throw new VolumeInUseError(name); // only while someone is removing it
    return () => loadNative().unlock(fd);
  }
}
