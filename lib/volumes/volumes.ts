// Volumes: bind mounts of host folders, named volumes that krunbox keeps
// under ~/.krunbox/volumes, and size-limited tmpfs mounts.
import fs from "node:fs";
import path from "node:path";
import { ConfigError, FsError, PathEscapeError, QuotaNotSupportedError, VolumeExistsError, VolumeInUseError, VolumeNotFoundError } from "../errors.js";
import { loadNative } from "../vm/native.js";
import { createDisk, ensureMounted, resizeDisk, unmount } from "./quota.js";
import { krunboxHome } from "../vm/runtime.js";
import { VM_DEFAULTS } from "../vm/defaults.js";

export type VolumeSpec =
  /** A host folder, or a single file, at `target`. */
  | { type: "bind"; source: string; target: string; readonly?: boolean }
  | { type: "named"; name: string; target: string; readonly?: boolean }
  | { type: "tmpfs"; target: string; sizeMiB?: number }
  /** Docker style: "./src:/src", "/abs:/dst:ro", "name:/data" (no "/" or "." first: a named volume). */
  | string;

export interface VolumeInfo {
  name: string;
  created: string;
  labels: Record<string, string>;
  /** Hard limit in MiB, enforced by the host kernel (see lib/quota.ts). */
  quotaMiB?: number;
  /** The host folder the guest sees. */
  path: string;
  /** "create": made by Volume.create (`krunbox volume create`); "mount": made on first use by a volumes entry (`-v name:/data`). */
  origin?: "create" | "mount";
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export function checkVolumeName(name: unknown, field: string): string {
  if (typeof name !== "string" || !NAME.test(name) || name.includes(".."))
    throw new ConfigError(
      field,
      `${field}: volume names are 1-64 characters of letters, digits, '_', '.' and '-', starting with a letter or digit, without ".." (got ${JSON.stringify(name)})`,
    );
  return name;
}

function checkQuota(quotaMiB: unknown): void {
  if (!Number.isInteger(quotaMiB) || (quotaMiB as number) < 16 || (quotaMiB as number) > 16 << 20)
    throw new ConfigError("quotaMiB", `quotaMiB: must be a whole number of MiB from 16 to ${16 << 20} (got ${String(quotaMiB)})`);
}

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
    const rel = inside(p);
    if (!rel) throw new ConfigError("path", "path: names the volume's root folder, not a file");
    await this.ready();
    fsCall(p, () => loadNative().writeFileBeneath(this.root, rel, Buffer.from(data), options.mode ?? 0o644));
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
    checkQuota(quotaMiB);
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
    return Volume.#create(name, options, "create");
  }

  static async #create(name: string, options: { quotaMiB?: number; labels?: Record<string, string> }, origin: VolumeInfo["origin"]): Promise<Volume> {
    checkVolumeName(name, "name");
    if (options.quotaMiB !== undefined) checkQuota(options.quotaMiB);
    const labels = options.labels ?? {};
    for (const [k, v] of Object.entries(labels))
      if (typeof v !== "string" || !k) throw new ConfigError(`labels.${k}`, `labels.${k}: labels map non-empty names to strings`);
    const { dir } = layout(name);
    fs.mkdirSync(volumesDir(), { recursive: true, mode: 0o700 });
    // Assemble aside, then rename into place: rename of a folder onto an
    // existing one fails, so exactly one of two racing creators wins.
    const tmp = fs.mkdtempSync(path.join(volumesDir(), `.new-${name}-`));
    const info: VolumeInfo = { name, created: new Date().toISOString(), labels, quotaMiB: options.quotaMiB, path: layout(name).data, origin };
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

export interface ResolvedVolumes {
  shares: { hostPath: string; guestPath: string; readOnly: boolean }[];
  tmpfs: { guestPath: string; sizeMiB: number }[];
  named: string[];
}

/** A Docker-style "SOURCE:TARGET[:ro|:rw]" entry; as in Docker, a source that does not start with "/" or "." names a volume. */
export function dockerStyleVolume(spec: string, field: string): Exclude<VolumeSpec, string> {
  const parts = spec.split(":");
  if (parts.length < 2 || parts.length > 3 || (parts[2] !== undefined && !["ro", "rw"].includes(parts[2])))
    throw new ConfigError(field, `${field}: expected "SOURCE:TARGET" or "SOURCE:TARGET:ro" (got ${JSON.stringify(spec)})`);
  const [source, target, mode] = parts;
  const readonly = mode === "ro";
  if (source.startsWith("/") || source.startsWith(".")) return { type: "bind", source, target, readonly };
  return { type: "named", name: source, target, readonly };
}

/** Volumes checked by checkVolumes: nothing created yet. */
export type VolumePlan = (Exclude<VolumeSpec, string> & { field: string })[];

/** Checks every volume entry (ConfigError names it) and creates nothing. */
export function checkVolumes(specs: VolumeSpec[]): VolumePlan {
  const plan: VolumePlan = [];
  const targets = new Set<string>();
  specs.forEach((raw, i) => {
    const field = `volumes[${i}]`;
    const spec = typeof raw === "string" ? dockerStyleVolume(raw, field) : raw;
    if (!spec || typeof spec !== "object" || !["bind", "named", "tmpfs"].includes(spec.type))
      throw new ConfigError(`${field}.type`, `${field}.type: must be "bind", "named" or "tmpfs"`);
    const t = spec.target;
    if (typeof t !== "string" || !path.posix.isAbsolute(t) || path.posix.normalize(t) !== t || t.endsWith("/") && t !== "/")
      throw new ConfigError(`${field}.target`, `${field}.target: must be an absolute, normalized guest path (got ${JSON.stringify(t)})`);
    if (t === "/") throw new ConfigError(`${field}.target`, `${field}.target: cannot be "/" (the root is the image)`);
    if (targets.has(t)) throw new ConfigError(`${field}.target`, `${field}.target: "${t}" is mounted twice`);
    targets.add(t);
    if (spec.type === "bind") {
      if (typeof spec.source !== "string" || !spec.source)
        throw new ConfigError(`${field}.source`, `${field}.source: must name a host folder or file`);
      const source = path.resolve(spec.source);
      const st = fs.statSync(source, { throwIfNoEntry: false });
      if (!st) throw new ConfigError(`${field}.source`, `${field}.source: ${source} does not exist on the host; create it first`);
      if (!st.isDirectory() && !st.isFile())
        throw new ConfigError(`${field}.source`, `${field}.source: ${source} is neither a folder nor a regular file; only those can be bound`);
      plan.push({ ...spec, source, field });
    } else if (spec.type === "named") {
      checkVolumeName(spec.name, `${field}.name`);
      plan.push({ ...spec, field });
    } else {
      const size = spec.sizeMiB ?? VM_DEFAULTS.tmpfsSizeMiB;
      if (!Number.isInteger(size) || size < 1)
        throw new ConfigError(`${field}.sizeMiB`, `${field}.sizeMiB: must be a positive whole number of MiB`);
      plan.push({ ...spec, sizeMiB: size, field });
    }
  });
  return plan;
}

/** Creates the plan's missing named volumes and says what to share and mount. */
export async function resolveVolumes(plan: VolumePlan): Promise<ResolvedVolumes> {
  const out: ResolvedVolumes = { shares: [], tmpfs: [], named: [] };
  for (const v of plan) {
    if (v.type === "tmpfs") out.tmpfs.push({ guestPath: v.target, sizeMiB: v.sizeMiB! });
    else if (v.type === "bind") out.shares.push({ hostPath: v.source, guestPath: v.target, readOnly: !!v.readonly });
    else {
      const vol = await Volume.ensure(v.name);
      await vol.ready();
      out.named.push(vol.name);
      out.shares.push({ hostPath: vol.info.path, guestPath: v.target, readOnly: !!v.readonly });
    }
  }
  return out;
}
