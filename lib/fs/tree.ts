// File trees as a stream of entries (parents before their contents), read
// from and written to host folders only through the addon's confined
// operations: what copyIn, copyOut and vol.fs move. The entries may come
// from a hostile guest, so the writer checks every name and bounds the bytes.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { FsLimitError, PathEscapeError } from "../errors.js";
import { loadNative } from "../vm/native.js";
import { fromNative, fromSystemError } from "./errors.js";
import { FS_CHUNK, FS_MAX_PATH } from "./protocol.js";

export interface TreeEntry {
  /** Relative to the tree's top ("" is the top itself), "/"-separated. */
  path: string;
  type: "file" | "directory" | "symlink";
  mode: number;
  /** A symlink's text. */
  target?: string;
  /** A file's bytes; consumed before the next entry is asked for. */
  data?: AsyncIterable<Buffer>;
}

const write = promisify(fs.write);
const fchmod = promisify(fs.fchmod);
const close = promisify(fs.close);
const S_IFMT = fs.constants.S_IFMT;

const join = (a: string, b: string) => (a && b ? `${a}/${b}` : a || b);

/** Runs an addon operation, turning its failure into a typed error naming `display`. */
export async function beneath<T>(display: string, folder: string, op: () => Promise<T>): Promise<T> {
  try {
    return await op();
  } catch (err) {
    throw fromNative(err, display, folder);
  }
}

/** Writes all of `chunk` at the fd's position (on libuv's threads). */
export async function writeAll(fd: number, chunk: Uint8Array): Promise<void> {
  for (let off = 0; off < chunk.length; ) off += (await write(fd, chunk, off, chunk.length - off)).bytesWritten;
}

/** The bytes of a file stream, with Node's errors turned into FsError naming `display`. */
export async function* chunksOf(stream: fs.ReadStream, display: string): AsyncGenerator<Buffer> {
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) yield chunk;
  } catch (err) {
    throw fromSystemError(err, display);
  }
}

/**
 * The tree at `rel` beneath `root`: symlinks are sent as links, never
 * followed, and FIFOs, devices and sockets are skipped (never opened).
 */
export async function* readTreeBeneath(root: string, rel: string, display: string, folder = display): AsyncGenerator<TreeEntry> {
  const native = loadNative().beneath;
  async function* walk(sub: string): AsyncGenerator<TreeEntry> {
    const where = join(rel, sub);
    const shown = sub ? path.join(display, sub) : display;
    const st = await beneath(shown, folder, () => native.stat(root, where, false));
    const mode = st.mode & 0o7777;
    switch (st.mode & S_IFMT) {
      case fs.constants.S_IFDIR: {
        yield { path: sub, type: "directory", mode };
        for (const child of await beneath(shown, folder, () => native.readdir(root, where))) yield* walk(join(sub, child.name));
        break;
      }
      case fs.constants.S_IFREG: {
        const { fd } = await beneath(shown, folder, () => native.openRead(root, where, false));
        // Read on libuv's threads; closed even if the consumer stops early.
        const stream = fs.createReadStream("", { fd, highWaterMark: FS_CHUNK });
        try {
          yield { path: sub, type: "file", mode, data: chunksOf(stream, shown) };
        } finally {
          stream.destroy();
        }
        break;
      }
      case fs.constants.S_IFLNK:
        yield { path: sub, type: "symlink", mode, target: await beneath(shown, folder, () => native.readlink(root, where)) };
        break;
    }
  }
  yield* walk("");
}

/** Checks an entry's relative path from an untrusted source. */
function entryPath(p: unknown, display: string, folder: string): string {
  if (typeof p !== "string" || p.includes("\0") || Buffer.byteLength(p) > FS_MAX_PATH) throw new PathEscapeError(String(p).slice(0, 200), folder);
  if (p && p.split("/").some((part) => part === "" || part === "." || part === ".."))
    throw new PathEscapeError(`${display}/${p}`, folder);
  return p;
}

/**
 * Writes `entries` to `rel` beneath `root` through the addon: every path is
 * resolved by the kernel beneath the root (RESOLVE_BENEATH), an entry
 * replaces what was there without following it, file modes lose setuid,
 * setgid and sticky bits, and at most `maxBytes` of data are written.
 */
export async function writeTreeBeneath(
  root: string,
  rel: string,
  entries: AsyncIterable<TreeEntry>,
  options: { maxBytes: number; display: string; folder?: string; createParent?: boolean },
): Promise<void> {
  const native = loadNative().beneath;
  const { display } = options;
  const folder = options.folder ?? display;
  if (options.createParent) await fs.promises.mkdir(root, { recursive: true });
  const dirModes: [string, string, number][] = [];
  let bytes = 0;
  for await (const e of entries) {
    const sub = entryPath(e.path, display, folder);
    const where = join(rel, sub);
    const shown = sub ? path.join(display, sub) : display;
    const mode = Number(e.mode) & 0o777;
    if (e.type === "directory") {
      try {
        await native.mkdir(root, where, 0o700, false);
      } catch (err) {
        if ((err as { errno?: number }).errno !== os.constants.errno.EEXIST) throw fromNative(err, shown, folder);
        // A file or symlink of that name is replaced, never followed.
        const st = await beneath(shown, folder, () => native.stat(root, where, false));
        if ((st.mode & S_IFMT) !== fs.constants.S_IFDIR) {
          await beneath(shown, folder, () => native.rm(root, where, false, false));
          await beneath(shown, folder, () => native.mkdir(root, where, 0o700, false));
        }
      }
      dirModes.push([where, shown, mode]); // applied last: a read-only folder must not stop its contents
    } else if (e.type === "file") {
      const fd = await beneath(shown, folder, () => native.create(root, where, 0o600));
      try {
        for await (const chunk of e.data ?? []) {
          bytes += chunk.length;
          if (bytes > options.maxBytes)
            throw new FsLimitError(display, "maxBytes", `the copy holds more than maxBytes (${options.maxBytes}) bytes of data; pass a larger maxBytes`);
          await writeAll(fd, chunk);
        }
        await fchmod(fd, mode);
      } catch (err) {
        throw fromSystemError(err, shown);
      } finally {
        await close(fd);
      }
    } else if (e.type === "symlink") {
      const target = e.target;
      if (typeof target !== "string" || !target || target.includes("\0") || Buffer.byteLength(target) > FS_MAX_PATH)
        throw new PathEscapeError(shown, folder);
      await beneath(shown, folder, () => native.symlink(root, where, target));
    }
  }
  for (const [where, shown, mode] of dirModes.reverse()) {
    const fd = await beneath(shown, folder, () => native.openDir(root, where, false));
    try {
      await fchmod(fd, mode);
    } finally {
      await close(fd);
    }
  }
}
