// Volumes: bind mounts of host folders, named volumes that krunbox keeps
// under ~/.krunbox/volumes, and size-limited tmpfs mounts.
import fs from "node:fs";
import path from "node:path";
import { ConfigError, QuotaNotSupportedError, VolumeExistsError, VolumeInUseError, VolumeNotFoundError } from "../errors.js";
import { loadNative } from "../vm/native.js";
import { createDisk, ensureMounted, resizeDisk, unmount } from "./quota.js";
import { krunboxHome } from "../vm/runtime.js";
import { VM_DEFAULTS } from "../vm/defaults.js";
import { VolumeFs } from "./volume-fs.js";

export type VolumeSpec =
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
    const info: VolumeInfo = { name, created: new Date().toISOString(), labels, quotaMiB: options.quotaMiB, path: layout(name).data };
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

export interface ResolvedVolumes {
  shares: { hostPath: string; guestPath: string; readOnly: boolean }[];
  tmpfs: { guestPath: string; sizeMiB: number }[];
  named: string[];
}

function parseDockerStyle(spec: string, field: string): Exclude<VolumeSpec, string> {
  const parts = spec.split(":");
  if (parts.length < 2 || parts.length > 3 || (parts[2] !== undefined && !["ro", "rw"].includes(parts[2])))
    throw new ConfigError(field, `${field}: expected "SOURCE:TARGET" or "SOURCE:TARGET:ro" (got ${JSON.stringify(spec)})`);
  const [source, target, mode] = parts;
  const readonly = mode === "ro";
  // As in Docker: a source that is not a path names a volume.
  if (source.startsWith("/") || source.startsWith(".")) return { type: "bind", source, target, readonly };
  return { type: "named", name: source, target, readonly };
}

/**
 * Validates every volume first (ConfigError names the entry), so that bad
 * input creates nothing; then creates missing named volumes.
 */
export async function resolveVolumes(specs: VolumeSpec[]): Promise<ResolvedVolumes> {
  const plan: (Exclude<VolumeSpec, string> & { field: string })[] = [];
  const targets = new Set<string>();
  specs.forEach((raw, i) => {
    const field = `volumes[${i}]`;
    const spec = typeof raw === "string" ? parseDockerStyle(raw, field) : raw;
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
        throw new ConfigError(`${field}.source`, `${field}.source: must name a host folder`);
      const source = path.resolve(spec.source);
      if (!fs.existsSync(source) || !fs.statSync(source).isDirectory())
        throw new ConfigError(`${field}.source`, `${field}.source: host folder ${source} does not exist; create it first`);
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
