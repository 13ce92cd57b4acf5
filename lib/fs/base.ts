// The file API that sb.fs (lib/fs/sandbox-fs.ts) and vol.fs
// (lib/volumes/volume-fs.ts) share: Node's fs/promises shapes, options and
// errors here, once; each backend supplies a few primitives.
import path from "node:path";
import { Readable, Writable } from "node:stream";
import { finished } from "node:stream/promises";
import { ConfigError, FsError, FsLimitError } from "../errors.js";
import { FS_MAX_PATH } from "./protocol.js";
import { readTreeBeneath, writeTreeBeneath, type TreeEntry } from "./tree.js";
import {
  Dirent,
  Stats,
  type CopyOutOptions,
  type EntryType,
  type RawStat,
  type ReadFileOptions,
  type WatchEvent,
  type WatchOptions,
  type WriteFileOptions,
  type WriteFlags,
} from "./types.js";
import { EventQueue } from "./watch.js";

export const DEFAULT_MAX_READ_BYTES = 256 << 20;
export const DEFAULT_MAX_COPY_BYTES = 4 * 2 ** 30;

/** Checks a path argument: a string without NUL, at most PATH_MAX. */
export function checkPath(p: unknown, field = "path"): string {
  if (typeof p !== "string" || p === "" || p.includes("\0") || Buffer.byteLength(p) > FS_MAX_PATH)
    throw new ConfigError(field, `${field}: must be a non-empty string without NUL, at most ${FS_MAX_PATH} bytes (got ${JSON.stringify(p)?.slice(0, 80)})`);
  return p;
}

function checkSize(value: unknown, field: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || (value as number) < 0)
    throw new ConfigError(field, `${field}: must be a whole number of bytes (got ${String(value)})`);
  return value as number;
}

function checkMode(value: unknown, field: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || (value as number) < 0 || (value as number) > 0o7777)
    throw new ConfigError(field, `${field}: must be a file mode from 0 to 0o7777 (got ${String(value)})`);
  return value as number;
}

function checkFlag(value: unknown, field: string): WriteFlags {
  if (value === undefined) return "w";
  if (value !== "w" && value !== "wx" && value !== "a") throw new ConfigError(field, `${field}: must be "w", "wx" or "a"`);
  return value;
}

/**
 * A file system in Node's `fs/promises` shape. Errors are FsError with
 * Node's errno codes, PathEscapeError, SpecialFileError or FsLimitError.
 */
export abstract class FileSystem {
  // The primitives each backend provides; `p` is the caller's path, checked.
  protected abstract statRaw(p: string, follow: boolean): Promise<RawStat>;
  protected abstract readdirRaw(p: string): Promise<{ name: string; type: EntryType }[]>;
  protected abstract mkdirRaw(p: string, recursive: boolean, mode: number): Promise<void>;
  protected abstract rmRaw(p: string, recursive: boolean, force: boolean): Promise<void>;
  protected abstract renameRaw(from: string, to: string): Promise<void>;
  /** The file's size when opened, and its bytes with backpressure. */
  protected abstract openRead(p: string): Promise<{ size: number; stream: Readable }>;
  /** A sink whose "finish" means the bytes are written (or an "error"). */
  protected abstract openWrite(p: string, mode: number, flags: WriteFlags): Promise<Writable>;
  /** The file or folder tree at `p`, never following symlinks; FIFOs, devices and sockets are left out. */
  protected abstract readTree(p: string): AsyncIterable<TreeEntry>;
  protected abstract writeTree(p: string, entries: AsyncIterable<TreeEntry>): Promise<void>;
  /** Starts watching; events go to `queue`; resolves with the function that stops. */
  protected abstract watchRaw(p: string, recursive: boolean, queue: EventQueue): Promise<() => void>;

  readFile(p: string, options?: { encoding?: null; maxBytes?: number } | null): Promise<Buffer>;
  readFile(p: string, options: BufferEncoding | { encoding: BufferEncoding; maxBytes?: number }): Promise<string>;
  async readFile(p: string, options?: BufferEncoding | ReadFileOptions | null): Promise<Buffer | string> {
    checkPath(p);
    const o = typeof options === "string" ? { encoding: options } : (options ?? {});
    const maxBytes = checkSize(o.maxBytes, "options.maxBytes", DEFAULT_MAX_READ_BYTES);
    const tooLarge = (size: string) =>
      new FsLimitError(p, "maxBytes", `holds ${size} bytes, more than maxBytes (${maxBytes}); pass a larger maxBytes or use createReadStream`);
    const { size, stream } = await this.openRead(p);
    if (size > maxBytes) {
      stream.destroy();
      throw tooLarge(String(size));
    }
    const chunks: Buffer[] = [];
    let total = 0;
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      total += chunk.length;
      if (total > maxBytes) {
        stream.destroy();
        throw tooLarge("over " + maxBytes);
      }
      chunks.push(chunk);
    }
    const data = Buffer.concat(chunks, total);
    return o.encoding ? data.toString(o.encoding) : data;
  }

  async writeFile(p: string, data: string | Uint8Array, options: WriteFileOptions | BufferEncoding = {}): Promise<void> {
    const o = typeof options === "string" ? { encoding: options } : options;
    if (typeof data !== "string" && !(data instanceof Uint8Array))
      throw new ConfigError("data", "data: must be a string, Buffer or Uint8Array");
    const w = this.createWriteStream(p, { mode: o.mode, flags: o.flag });
    w.end(typeof data === "string" ? Buffer.from(data, o.encoding ?? "utf8") : data);
    await finished(w);
  }

  readdir(p: string, options?: { withFileTypes?: false }): Promise<string[]>;
  readdir(p: string, options: { withFileTypes: true }): Promise<Dirent[]>;
  async readdir(p: string, options: { withFileTypes?: boolean } = {}): Promise<string[] | Dirent[]> {
    const entries = await this.readdirRaw(checkPath(p));
    if (options.withFileTypes) return entries.map((e) => new Dirent(e.name, p, e.type));
    return entries.map((e) => e.name);
  }

  async stat(p: string): Promise<Stats> {
    return new Stats(await this.statRaw(checkPath(p), true));
  }

  async lstat(p: string): Promise<Stats> {
    return new Stats(await this.statRaw(checkPath(p), false));
  }

  async mkdir(p: string, options: { recursive?: boolean; mode?: number } = {}): Promise<void> {
    await this.mkdirRaw(checkPath(p), options.recursive ?? false, checkMode(options.mode, "options.mode", 0o777));
  }

  async rm(p: string, options: { recursive?: boolean; force?: boolean } = {}): Promise<void> {
    await this.rmRaw(checkPath(p), options.recursive ?? false, options.force ?? false);
  }

  async rename(from: string, to: string): Promise<void> {
    await this.renameRaw(checkPath(from, "from"), checkPath(to, "to"));
  }

  /** Whether `p` exists (following symlinks); false for any FsError, as fs.existsSync. */
  async exists(p: string): Promise<boolean> {
    try {
      await this.statRaw(checkPath(p), true);
      return true;
    } catch (err) {
      if (err instanceof FsError) return false;
      throw err;
    }
  }

  /** A Readable of the file, with backpressure; errors arrive as "error" events. */
  createReadStream(p: string): Readable {
    checkPath(p);
    let source: Readable | undefined;
    const out: Readable = new Readable({
      construct: (done) => {
        this.openRead(p).then(({ stream }) => {
          source = stream;
          stream.on("data", (chunk: Buffer) => {
            if (!out.push(chunk)) stream.pause();
          });
          stream.on("end", () => out.push(null));
          stream.on("error", (err) => out.destroy(err));
          done();
        }, done);
      },
      read: () => {
        source?.resume();
      },
      destroy: (err, done) => {
        source?.destroy();
        done(err);
      },
    });
    return out;
  }

  /** A Writable into the file, with backpressure; "finish" once the data is written. */
  createWriteStream(p: string, options: { mode?: number; flags?: WriteFlags } = {}): Writable {
    checkPath(p);
    const mode = checkMode(options.mode, "options.mode", 0o666);
    const flags = checkFlag(options.flags, "options.flags");
    let sink: Writable | undefined;
    const out: Writable = new Writable({
      construct: (done) => {
        this.openWrite(p, mode, flags).then((w) => {
          sink = w;
          w.on("error", (err) => out.destroy(err));
          done();
        }, done);
      },
      write: (chunk: Buffer, _encoding, done) => {
        if (sink!.write(chunk)) done();
        else sink!.once("drain", () => done());
      },
      final: (done) => {
        sink!.end();
        finished(sink!).then(() => done(), done);
      },
      destroy: (err, done) => {
        if (sink && !sink.writableFinished) sink.destroy();
        done(err);
      },
    });
    return out;
  }

  /** Copies a host file or folder tree (symlinks as symlinks) to `p`, replacing files there. */
  async copyIn(hostPath: string, p: string): Promise<void> {
    const host = path.resolve(checkPath(hostPath, "hostPath"));
    await this.writeTree(checkPath(p), readTreeBeneath(path.dirname(host), path.basename(host), host));
  }

  /**
   * Copies the file or folder tree at `p` to `hostPath` (created, with its
   * parents; files there are replaced). Whatever names and symlinks the tree
   * holds, nothing is written outside `hostPath`, and no symlink is followed.
   */
  async copyOut(p: string, hostPath: string, options: CopyOutOptions = {}): Promise<void> {
    checkPath(p);
    const host = path.resolve(checkPath(hostPath, "hostPath"));
    if (host === "/") throw new ConfigError("hostPath", "hostPath: cannot be the root folder");
    const maxBytes = checkSize(options.maxBytes, "options.maxBytes", DEFAULT_MAX_COPY_BYTES);
    await writeTreeBeneath(path.dirname(host), path.basename(host), this.readTree(p), { maxBytes, display: host, createParent: true });
  }

  /** Like fs.promises.watch: events until the loop ends or `signal` aborts (then an AbortError). */
  watch(p: string, options: WatchOptions = {}): AsyncIterableIterator<WatchEvent> {
    checkPath(p);
    const recursive = options.recursive ?? false;
    const maxQueue = checkSize(options.maxQueue, "options.maxQueue", 2048) || 1;
    return new EventQueue(maxQueue, options.signal, (queue) => this.watchRaw(p, recursive, queue));
  }
}
