// Applies OCI layer tarballs (gzip or plain) onto a root folder, as the
// image spec says: whiteouts (.wh.NAME) delete from lower layers, opaque
// markers (.wh..wh..opq) hide a folder's lower contents. The tar is
// untrusted: every path is normalized and refused if it climbs out, and
// every write goes through the addon's openat2(RESOLVE_BENEATH) operations,
// so a symlink made by an earlier entry can never redirect a later one.
// What it may write is bounded (UnpackBudget): a small layer that claims
// gigabytes is refused at the entry that claims them, before the disk fills.
import fs from "node:fs";
import { constants as osConstants } from "node:os";
import path from "node:path";
import { Transform } from "node:stream";
import zlib from "node:zlib";
import { Decompress } from "fzstd";
import { UnsafeLayerError } from "../errors.js";
import { loadNative } from "../vm/native.js";

const BLOCK = 512;
// What an entry costs on disk at least (a block, an inode).
const DISK_BLOCK = 4096;
// Free space is checked whenever this much more has been promised to the disk.
const FREE_CHECK_BYTES = 16 << 20;
// The highest uid/gid; above it fchown would fail (or wrap in other tools).
const MAX_ID = 2 ** 32 - 2;
const WHITEOUT = ".wh.";
const OPAQUE = ".wh..wh..opq";

function str(b: Buffer, start: number, len: number): string {
  const s = b.subarray(start, start + len);
  const nul = s.indexOf(0);
  return s.subarray(0, nul < 0 ? s.length : nul).toString("utf8");
}

function num(b: Buffer, start: number, len: number): number {
  const f = b.subarray(start, start + len);
  if (f[0] & 0x80) {
    // base-256 (GNU) for large values
    let v = 0;
    for (let i = 1; i < f.length; i++) v = v * 256 + f[i];
    return v;
  }
  const text = str(b, start, len).trim();
  return text ? parseInt(text, 8) : 0;
}

/** The entry's path inside the root, or an UnsafeLayerError. */
export function entryPath(name: string): string {
  if (name.includes("\0")) throw new UnsafeLayerError(`tar entry name contains NUL`);
  const rel = path.posix.normalize(name.replace(/^(\.\/|\/)+/, ""));
  if (rel === ".." || rel.startsWith("../") || path.posix.isAbsolute(rel))
    throw new UnsafeLayerError(`tar entry "${name}" points outside the image; the layer is refused`);
  return rel === "." ? "" : rel.replace(/\/$/, "");
}

/**
 * What the layers of one image may write: at most `maxBytes` in all, and
 * never so much that the file system of `dir` drops below its reserve (5%
 * of its size, at most 256 MiB). Every refusal is an UnsafeLayerError.
 */
export class UnpackBudget {
  #used = 0;
  #sinceCheck = 0;
  constructor(
    readonly maxBytes: number,
    readonly dir: string,
  ) {}

  /** Before anything is written: room for `bytes` (the compressed layers) at least. */
  checkFree(bytes: number): void {
    const s = fs.statfsSync(this.dir);
    const free = s.bavail * s.bsize;
    const reserve = Math.min(256 << 20, (s.blocks * s.bsize) / 20);
    if (free - bytes - FREE_CHECK_BYTES < reserve)
      throw new UnsafeLayerError(
        `unpacking the image would leave less than ${Math.round(reserve / 2 ** 20)} MiB free on the file system of ${this.dir} (${Math.round(free / 2 ** 20)} MiB free); the pull was stopped and nothing was kept`,
      );
    this.#sinceCheck = 0;
  }

  /** Accounts for `bytes` that `what` is about to write. */
  charge(bytes: number, what: string): void {
    this.#used += bytes;
    if (this.#used > this.maxBytes)
      throw new UnsafeLayerError(
        `the image unpacks to more than maxUnpackedBytes (${this.maxBytes} bytes) at ${what}; the pull was stopped and nothing was kept (raise maxUnpackedBytes if you trust the image)`,
      );
    this.#sinceCheck += bytes;
    if (this.#sinceCheck > FREE_CHECK_BYTES) this.checkFree(bytes);
  }
}

// A native file operation that failed because of what the layer holds
// (a path through a symlink that leads out, a file where a folder must be).
function layerError(err: unknown, entry: string): unknown {
  const e = err as { code?: string; errno?: number; message?: string };
  if (e?.code === "ERR_KRUNBOX_PATH_ESCAPE")
    return new UnsafeLayerError(`tar entry "${entry}" would be written through a symlink that leads outside the image; the layer is refused`);
  const structural = [osConstants.errno.ENOTDIR, osConstants.errno.ELOOP, osConstants.errno.EEXIST, osConstants.errno.EISDIR, osConstants.errno.ENOENT];
  if (e?.code === "ERR_KRUNBOX_FS" && structural.includes(e.errno!))
    return new UnsafeLayerError(`tar entry "${entry}" cannot be applied (${e.message}); the layer is refused`);
  return err;
}

function checkId(value: number, what: string, entry: string): number {
  if (!Number.isInteger(value) || value < 0 || value > MAX_ID)
    throw new UnsafeLayerError(`tar entry "${entry}" has ${what} ${value}, outside 0 to ${MAX_ID}; the layer is refused`);
  return value;
}

interface Entry {
  type: string;
  path: string;
  linkpath: string;
  size: number;
  mode: number;
  uid: number;
  gid: number;
}

export type Compression = "gzip" | "zstd" | "none";

// Node 20 has no zstd; fzstd is a small pure-JS decoder.
function zstdDecompressor(): Transform {
  const decoder = new Decompress();
  const t = new Transform({
    transform(chunk: Buffer, _enc, done) {
      try {
        decoder.push(chunk);
        done();
      } catch (err) {
        done(new UnsafeLayerError(`bad zstd data: ${(err as Error).message}`));
      }
    },
    flush(done) {
      try {
        decoder.push(new Uint8Array(0), true);
        done();
      } catch (err) {
        done(new UnsafeLayerError(`bad zstd data: ${(err as Error).message}`));
      }
    },
  });
  decoder.ondata = (data) => void t.push(Buffer.from(data));
  return t;
}

/** Applies one layer onto `root` within `budget`; returns how many device/FIFO entries it skipped. */
export async function applyLayer(root: string, file: string, compression: Compression, budget: UnpackBudget): Promise<{ skipped: number }> {
  const native = loadNative();
  const asRoot = process.getuid?.() === 0;
  // What this layer wrote: its own opaque markers must not hide it.
  const created = new Set<string>();
  let skipped = 0;

  // Applies an entry's header; returns the fd its data goes to, if any.
  const begin = (e: Entry): number | undefined => {
    const base = path.posix.basename(e.path);
    const dir = path.posix.dirname(e.path) === "." ? "" : path.posix.dirname(e.path);
    if (base === OPAQUE) {
      for (const child of native.readdirBeneath(root, dir)) {
        const p = dir ? `${dir}/${child.name}` : child.name;
        if (!created.has(p)) native.rmBeneath(root, p, true);
      }
      return undefined;
    }
    if (base.startsWith(WHITEOUT)) {
      try {
        native.rmBeneath(root, entryPath((dir ? `${dir}/` : "") + base.slice(WHITEOUT.length)), true);
      } catch {
        // nothing to hide
      }
      return undefined;
    }
    if (!e.path) return undefined; // the root itself
    created.add(e.path);
    switch (e.type) {
      case "5": {
        let fd: number;
        try {
          native.mkdirBeneath(root, e.path);
          fd = native.openDirBeneath(root, e.path);
        } catch {
          // A folder replaces a file or symlink of a lower layer (never
          // following the symlink).
          native.rmBeneath(root, e.path, false);
          native.mkdirBeneath(root, e.path);
          fd = native.openDirBeneath(root, e.path);
        }
        try {
          fs.fchmodSync(fd, e.mode & 0o7777);
          if (asRoot) fs.fchownSync(fd, e.uid, e.gid);
        } finally {
          fs.closeSync(fd);
        }
        return undefined;
      }
      case "0":
      case "7":
        return native.createBeneath(root, e.path, 0o600);
      case "2":
        native.symlinkBeneath(root, e.path, e.linkpath);
        return undefined;
      case "1":
        native.linkBeneath(root, e.path, entryPath(e.linkpath));
        return undefined;
      default:
        // Device nodes and FIFOs are not created on the host.
        skipped++;
        return undefined;
    }
  };
  const finish = (e: Entry, fd: number) => {
    try {
      if (asRoot) fs.fchownSync(fd, e.uid, e.gid);
      fs.fchmodSync(fd, e.mode & 0o7777);
    } finally {
      fs.closeSync(fd);
    }
  };

  let pax: Record<string, string> = {};
  let longName: string | undefined;
  let longLink: string | undefined;
  // The entry whose data is being read: a file (fd) or metadata (chunks).
  let current: { entry: Entry; remaining: number; pad: number; fd?: number; meta?: Buffer[] } | undefined;
  let ended = false;
  let buf: Buffer = Buffer.alloc(0);
  const input = fs.createReadStream(file);
  const stream = compression === "gzip" ? input.pipe(zlib.createGunzip()) : compression === "zstd" ? input.pipe(zstdDecompressor()) : input;
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      if (ended) break; // what follows the end-of-archive blocks is never buffered
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      for (;;) {
        if (current) {
          const take = Math.min(current.remaining, buf.length);
          if (take > 0) {
            const part = buf.subarray(0, take);
            if (current.fd !== undefined) fs.writeSync(current.fd, part);
            else current.meta?.push(Buffer.from(part));
            current.remaining -= take;
            buf = buf.subarray(take);
          }
          if (current.remaining > 0 || buf.length < current.pad) break;
          buf = buf.subarray(current.pad);
          const done = current;
          current = undefined;
          if (done.fd !== undefined) finish(done.entry, done.fd);
          if (done.meta) {
            const text = Buffer.concat(done.meta).toString("utf8").replace(/\0+$/, "");
            if (done.entry.type === "x") pax = parsePax(text);
            else if (done.entry.type === "L") longName = text;
            else if (done.entry.type === "K") longLink = text;
          }
          continue;
        }
        if (ended || buf.length < BLOCK) break;
        const h = buf.subarray(0, BLOCK);
        buf = buf.subarray(BLOCK);
        if (h.every((b) => b === 0)) {
          ended = true;
          break;
        }
        const type = h[156] === 0 ? "0" : String.fromCharCode(h[156]);
        const isMeta = type === "x" || type === "g" || type === "L" || type === "K";
        const prefix = str(h, 345, 155);
        const rawName = pax.path ?? longName ?? (prefix ? `${prefix}/${str(h, 0, 100)}` : str(h, 0, 100));
        const size = pax.size !== undefined ? Number(pax.size) : num(h, 124, 12);
        if (!Number.isSafeInteger(size) || size < 0) throw new UnsafeLayerError(`tar entry "${rawName}" has a bad size`);
        if (isMeta && size > 1 << 20) throw new UnsafeLayerError("tar metadata entry larger than 1 MiB");
        const entry: Entry = {
          type,
          path: isMeta ? "" : entryPath(rawName),
          linkpath: pax.linkpath ?? longLink ?? str(h, 157, 100),
          size,
          mode: num(h, 100, 8),
          uid: checkId(pax.uid !== undefined ? Number(pax.uid) : num(h, 108, 8), "uid", rawName),
          gid: checkId(pax.gid !== undefined ? Number(pax.gid) : num(h, 116, 8), "gid", rawName),
        };
        // Only regular files and metadata carry data in the archive.
        const dataSize = isMeta || type === "0" || type === "7" ? size : 0;
        budget.charge(Math.max(DISK_BLOCK, Math.ceil(dataSize / DISK_BLOCK) * DISK_BLOCK), `tar entry "${rawName}"`);
        current = { entry, remaining: dataSize, pad: Math.ceil(dataSize / BLOCK) * BLOCK - dataSize };
        if (isMeta) {
          if (type !== "g") current.meta = []; // global pax headers are ignored
        } else {
          pax = {};
          longName = longLink = undefined;
          try {
            current.fd = begin(entry);
          } catch (err) {
            throw layerError(err, rawName);
          }
        }
      }
    }
  } finally {
    if (current?.fd !== undefined) fs.closeSync(current.fd);
    // A refused layer is not read to its end; its file is closed before we return.
    if (!input.closed) await new Promise<void>((r) => input.destroy().once("close", () => r()));
  }
  if (current || !ended) throw new UnsafeLayerError("the layer's tar is truncated");
  return { skipped };
}

function parsePax(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  let rest = Buffer.from(text, "utf8");
  while (rest.length) {
    const space = rest.indexOf(32);
    const len = parseInt(rest.subarray(0, space).toString(), 10);
    if (!(len > 0) || space < 0 || len > rest.length) throw new UnsafeLayerError("malformed pax header");
    const record = rest.subarray(space + 1, len - 1).toString("utf8");
    const eq = record.indexOf("=");
    out[record.slice(0, eq)] = record.slice(eq + 1);
    rest = rest.subarray(len);
  }
  return out;
}
