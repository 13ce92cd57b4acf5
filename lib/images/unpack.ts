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
import { BLOCK, checkSparseMap, decodeHeader, gnuSparseMap, MAX_META_BYTES, noPax, parsePax, paxSparse, readDataMap } from "./tar.js";

// What an entry costs on disk at least (a block, an inode).
const DISK_BLOCK = 4096;
// Free space is checked whenever this much more has been promised to the disk.
const FREE_CHECK_BYTES = 16 << 20;
// The highest uid/gid; above it fchown would fail (or wrap in other tools).
const MAX_ID = 2 ** 32 - 2;
const WHITEOUT = ".wh.";
const OPAQUE = ".wh..wh..opq";

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

  const input = fs.createReadStream(file);
  const stream = compression === "gzip" ? input.pipe(zlib.createGunzip()) : compression === "zstd" ? input.pipe(zstdDecompressor()) : input;
  const reader = new ByteReader((stream as AsyncIterable<Buffer>)[Symbol.asyncIterator]());
  const nextBlock = () => reader.exactly(BLOCK);
  let pax = noPax();
  let longName: string | undefined;
  let longLink: string | undefined;
  let fd: number | undefined;
  try {
    for (;;) {
      const block = await nextBlock();
      // The end of the archive; what follows it is never read.
      if (block.every((b) => b === 0)) break;
      const h = decodeHeader(block);
      if (!Number.isSafeInteger(h.size) || h.size < 0) throw new UnsafeLayerError(`tar entry "${h.name}" has a bad size`);
      if (h.type === "x" || h.type === "g" || h.type === "L" || h.type === "K") {
        if (h.size > MAX_META_BYTES) throw new UnsafeLayerError("tar metadata entry larger than 1 MiB");
        budget.charge(DISK_BLOCK, `tar entry "${h.name}"`);
        const text = (await reader.exactly(padded(h.size))).subarray(0, h.size).toString("utf8").replace(/\0+$/, "");
        if (h.type === "x") pax = parsePax(text);
        else if (h.type === "L") longName = text;
        else if (h.type === "K") longLink = text;
        continue; // global pax headers are ignored
      }
      const v = pax.values;
      const sparse = h.type === "S" ? { map: await gnuSparseMap(h, nextBlock) } : paxSparse(pax, h.name);
      const rawName = sparse?.realName ?? v.path ?? longName ?? h.name;
      if (!KNOWN_TYPES.includes(h.type) && h.type !== "S")
        throw new UnsafeLayerError(`tar entry "${rawName}" has type "${h.type}", which image layers do not use; the layer is refused`);
      const size = v.size !== undefined ? Number(v.size) : h.size;
      if (!Number.isSafeInteger(size) || size < 0) throw new UnsafeLayerError(`tar entry "${rawName}" has a bad size`);
      const entry: Entry = {
        type: h.type === "S" ? "0" : h.type,
        path: entryPath(rawName),
        linkpath: v.linkpath ?? longLink ?? h.linkpath,
        size,
        mode: h.mode,
        uid: checkId(v.uid !== undefined ? Number(v.uid) : h.uid, "uid", rawName),
        gid: checkId(v.gid !== undefined ? Number(v.gid) : h.gid, "gid", rawName),
      };
      pax = noPax();
      longName = longLink = undefined;
      // Only regular files carry data in the archive.
      const stored = entry.type === "0" || entry.type === "7" ? size : 0;
      let map = sparse?.map;
      let left = stored;
      if (sparse?.mapInData !== undefined) {
        const inData = await readDataMap(nextBlock, rawName, sparse.mapInData);
        map = inData.map;
        left -= inData.bytes;
      }
      if (map) checkSparseMap(rawName, map, left);
      // A sparse file counts at its apparent size: that is what it unpacks to for whoever reads it.
      const unpacked = map ? map.realSize : stored;
      budget.charge(Math.max(DISK_BLOCK, Math.ceil(unpacked / DISK_BLOCK) * DISK_BLOCK), `tar entry "${rawName}"`);
      try {
        fd = begin(entry);
      } catch (err) {
        throw layerError(err, rawName);
      }
      const segments = map?.segments ?? [{ offset: 0, length: left }];
      for (const { offset, length } of segments)
        for (let done = 0; done < length; ) {
          const chunk = await reader.some(length - done);
          if (fd !== undefined) fs.writeSync(fd, chunk, 0, chunk.length, offset + done);
          done += chunk.length;
        }
      await reader.exactly(padded(stored) - stored);
      if (fd !== undefined) {
        if (map) fs.ftruncateSync(fd, map.realSize);
        const done = fd;
        fd = undefined;
        finish(entry, done);
      }
    }
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
    // A refused layer is not read to its end; its file is closed before we return.
    if (!input.closed) await new Promise<void>((r) => input.destroy().once("close", () => r()));
  }
  return { skipped };
}

const KNOWN_TYPES = ["0", "1", "2", "3", "4", "5", "6", "7"];
const padded = (n: number) => Math.ceil(n / BLOCK) * BLOCK;

// Pulls exact byte counts from a stream of chunks; the end of the stream
// inside a read is a truncated layer.
class ByteReader {
  #chunks: AsyncIterator<Buffer>;
  #buf: Buffer = Buffer.alloc(0);
  constructor(chunks: AsyncIterator<Buffer>) {
    this.#chunks = chunks;
  }

  async #fill(n: number): Promise<void> {
    while (this.#buf.length < n) {
      const r = await this.#chunks.next();
      if (r.done) throw new UnsafeLayerError("the layer's tar is truncated");
      this.#buf = this.#buf.length ? Buffer.concat([this.#buf, r.value]) : r.value;
    }
  }

  /** Exactly `n` bytes. */
  async exactly(n: number): Promise<Buffer> {
    await this.#fill(n);
    const out = this.#buf.subarray(0, n);
    this.#buf = this.#buf.subarray(n);
    return out;
  }

  /** 1 to `max` bytes: what is buffered, or the next chunk. */
  async some(max: number): Promise<Buffer> {
    await this.#fill(1);
    return this.exactly(Math.min(max, this.#buf.length));
  }
}
