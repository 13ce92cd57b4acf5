// vol.fs: the file API (lib/fs/base.ts) over a volume's host folder, which
// guests write to. Every operation goes through the addon's confined,
// asynchronous operations (src/addon/beneath_ops.h): nothing leaves the
// folder, no FIFO or device is opened, and Node's event loop never waits.
import fs from "node:fs";
import os from "node:os";
import { Readable, Writable } from "node:stream";
import { promisify } from "node:util";
import { ConfigError, FsError, PathEscapeError } from "../errors.js";
import { FileSystem } from "../fs/base.js";
import { fromNative, fromSystemError, fsError } from "../fs/errors.js";
import { FS_CHUNK } from "../fs/protocol.js";
import { beneath, chunksOf, readTreeBeneath, writeAll, writeTreeBeneath, type TreeEntry } from "../fs/tree.js";
import type { EntryType, RawStat, WriteFlags } from "../fs/types.js";
import { EventQueue, watchBeneath } from "../fs/watch.js";
import { loadNative } from "../vm/native.js";

const FOLDER = "the volume";
const close = promisify(fs.close);

/**
 * A path inside the volume, relative and normalized; "/" and "" are its
 * root. ".." that would climb above the root is a PathEscapeError (the
 * kernel refuses symlinks that would, see openat2 RESOLVE_BENEATH).
 */
export function insideVolume(p: string): string {
  const parts: string[] = [];
  for (const part of p.split("/")) {
    if (part === "" || part === ".") continue;
    if (part !== "..") parts.push(part);
    else if (!parts.pop()) throw new PathEscapeError(p);
  }
  return parts.join("/");
}

/** Host-side file access to a volume that never leaves it, whatever the guest put there. */
export class VolumeFs extends FileSystem {
  constructor(
    private readonly root: string,
    private readonly ready: () => Promise<void>,
  ) {
    super();
  }

  // The caller's path made relative, the volume made ready, the addon's
  // failure made a typed error naming the caller's path.
  async #op<T>(p: string, op: (rel: string) => Promise<T>): Promise<T> {
    const rel = insideVolume(p);
    await this.ready();
    return beneath(p, FOLDER, () => op(rel));
  }

  #notRoot(p: string, what: string): string {
    const rel = insideVolume(p);
    if (!rel) throw new ConfigError("path", `path: "${p}" is the volume's root folder; ${what}`);
    return rel;
  }

  protected statRaw(p: string, follow: boolean): Promise<RawStat> {
    return this.#op(p, (rel) => loadNative().beneath.stat(this.root, rel, follow));
  }

  protected readdirRaw(p: string): Promise<{ name: string; type: EntryType }[]> {
    return this.#op(p, (rel) => loadNative().beneath.readdir(this.root, rel));
  }

  protected async mkdirRaw(p: string, recursive: boolean, mode: number): Promise<void> {
    const mkdir = (rel: string) => this.#op(p, () => loadNative().beneath.mkdir(this.root, rel, mode, false));
    if (!recursive) return mkdir(insideVolume(p));
    const parts = insideVolume(p).split("/").filter(Boolean);
    for (let i = 1; i <= parts.length; i++) {
      const rel = parts.slice(0, i).join("/");
      try {
        await mkdir(rel);
      } catch (err) {
        if (!(err instanceof FsError && err.code === "EEXIST")) throw err;
        if (!(await this.stat(rel)).isDirectory()) throw i === parts.length ? err : fsError(os.constants.errno.ENOTDIR, "mkdir", p);
      }
    }
  }

  protected async rmRaw(p: string, recursive: boolean, force: boolean): Promise<void> {
    const rel = this.#notRoot(p, "use Volume.remove to remove the volume");
    try {
      await this.#op(p, () => loadNative().beneath.rm(this.root, rel, recursive, false));
    } catch (err) {
      if (!(force && err instanceof FsError && err.code === "ENOENT")) throw err;
    }
  }

  protected async renameRaw(from: string, to: string): Promise<void> {
    const a = this.#notRoot(from, "it cannot be renamed");
    const b = this.#notRoot(to, "it cannot be replaced");
    await this.ready();
    try {
      await loadNative().beneath.rename(this.root, a, b);
    } catch (err) {
      throw fromNative(err, from, FOLDER, to);
    }
  }

  protected async openRead(p: string): Promise<{ size: number; stream: Readable }> {
    const { fd, size } = await this.#op(p, (rel) => loadNative().beneath.openRead(this.root, rel, true));
    // Read on libuv's threads, with Node's backpressure; closed however the
    // reader ends, even before its first read.
    const file = fs.createReadStream("", { fd, highWaterMark: FS_CHUNK });
    const stream = Readable.from(chunksOf(file, p), { objectMode: false });
    stream.once("close", () => file.destroy());
    return { size, stream };
  }

  protected async openWrite(p: string, mode: number, flags: WriteFlags): Promise<Writable> {
    const rel = this.#notRoot(p, "write to a file in it");
    const fd = await this.#op(p, () => loadNative().beneath.openWrite(this.root, rel, mode, flags));
    let open = true;
    const closeOnce = () => {
      open = false;
      return close(fd);
    };
    return new Writable({
      write: (chunk: Buffer, _encoding, done) => writeAll(fd, chunk).then(() => done(), (err) => done(fromSystemError(err, p) as Error)),
      final: (done) => closeOnce().then(() => done(), (err) => done(fromSystemError(err, p) as Error)),
      destroy: (err, done) => (open ? closeOnce().then(() => done(err), () => done(err)) : done(err)),
    });
  }

  protected async *readTree(p: string): AsyncGenerator<TreeEntry> {
    const rel = insideVolume(p);
    await this.ready();
    yield* readTreeBeneath(this.root, rel, p, FOLDER);
  }

  protected async writeTree(p: string, entries: AsyncIterable<TreeEntry>): Promise<void> {
    const rel = insideVolume(p);
    await this.ready();
    // The source is the caller's own host folder: no size bound.
    await writeTreeBeneath(this.root, rel, entries, { maxBytes: Infinity, display: p, folder: FOLDER });
  }

  protected async watchRaw(p: string, recursive: boolean, queue: EventQueue): Promise<() => void> {
    const rel = insideVolume(p);
    await this.ready();
    return watchBeneath(this.root, rel, { recursive, display: p, folder: FOLDER }, queue);
  }
}
