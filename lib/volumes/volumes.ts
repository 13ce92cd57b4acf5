// Volumes: bind mounts of host folders, named volumes that krunbox keeps
// under ~/.krunbox/volumes, and size-limited tmpfs mounts.
import fs from "node:fs";
import path from "node:path";
import { z } from "zod";
import { ConfigError, QuotaNotSupportedError, VolumeExistsError, VolumeInUseError, VolumeNotFoundError } from "../errors.js";
import { loadNative } from "../vm/native.js";
import { createDisk, ensureMounted, resizeDisk, unmount } from "./quota.js";
import { krunboxHome } from "../vm/runtime.js";
import { parseOptions } from "../validate.js";
import { VolumeFs } from "./volume-fs.js";

export interface VolumeInfo {
  readonly name: string;
  readonly created: string;
  readonly labels: Readonly<Record<string, string>>;
  /** Hard limit in MiB, enforced by the host kernel (see lib/quota.ts). */
  readonly quotaMiB?: number;
  /** The host folder the guest sees. */
  readonly path: string;
  /** "create": made by Volume.create (`krunbox volume create`); "mount": made on first use by a volumes entry (`-v name:/data`). */
  readonly origin?: "create" | "mount";
}

const frozen = (info: VolumeInfo): VolumeInfo => Object.freeze({ ...info, labels: Object.freeze({ ...info.labels }) });

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

// volume.json is replaced whole (write aside, then rename): readers never see half of it.
function writeMeta(dir: string, info: VolumeInfo): void {
  const { name, created, labels, quotaMiB, origin } = info;
  const tmp = path.join(dir, `.volume.json.${process.pid}`);
  fs.writeFileSync(tmp, JSON.stringify({ name, created, labels, quotaMiB, origin }, null, 2) + "\n");
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

export class Volume {
  readonly fs: VolumeFs;
  #info: VolumeInfo;
  private constructor(info: VolumeInfo) {
    this.#info = frozen(info);
    this.fs = new VolumeFs(info.path, () => this.ready());
  }

  /** What volume.json says (name, created, labels, quotaMiB, origin) and the host folder guests see (read-only). */
  get info(): VolumeInfo {
    return this.#info;
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
    this.#info = frozen({ ...this.#info, quotaMiB });
    writeMeta(dir, this.#info);
  }
  get name(): string {
    return this.info.name;
  }

  /** Creates a volume; VolumeExistsError if it exists (two racing creators: one wins). */
  static async create(
    name: string,
    options: {
      /** A hard size limit in MiB (16 to 16777216), enforced by the host kernel; needs root. Default: none. */
      quotaMiB?: number;
      /** Free-form KEY: value pairs kept in volume.json. Default: {}. */
      labels?: Record<string, string>;
    } = {},
  ): Promise<Volume> {
    return Volume.#create(name, options, "create");
  }

  static async #create(name: string, options: { quotaMiB?: number; labels?: Record<string, string> }, origin: VolumeInfo["origin"]): Promise<Volume> {
    checkVolumeName(name, "name");
    const { quotaMiB, labels } = parseOptions(createOptionsSchema, options, "");
    const { dir } = layout(name);
    fs.mkdirSync(volumesDir(), { recursive: true, mode: 0o700 });
    // Assemble aside, then rename into place: rename of a folder onto an
    // existing one fails, so exactly one of two racing creators wins.
    const tmp = fs.mkdtempSync(path.join(volumesDir(), `.new-${name}-`));
    const info: VolumeInfo = { name, created: new Date().toISOString(), labels, quotaMiB, path: layout(name).data, origin };
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
    const m = JSON.parse(raw) as Partial<VolumeInfo>;
    return new Volume({ name, created: m.created ?? "", labels: m.labels ?? {}, quotaMiB: m.quotaMiB, path: data, origin: m.origin });
  }

  /** Gets the volume, creating it if absent (safe against concurrent creators); for volumes entries. */
  static async ensure(name: string): Promise<Volume> {
    try {
      return await Volume.get(name);
    } catch (err) {
      if (!(err instanceof VolumeNotFoundError)) throw err;
    }
    try {
      return await Volume.#create(name, {}, "mount");
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
      // Off the main thread: guests decide how much there is to delete.
      await loadNative().beneath.rm(volumesDir(), vol.name, true, true);
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
