// What sb.fs and vol.fs return: Node's shapes (Stats, Dirent, watch events).
import { constants } from "node:fs";

/** The fields of a stat, as the addon and the guest agent send them. */
export interface RawStat {
  dev: number;
  ino: number;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  rdev: number;
  size: number;
  blksize: number;
  blocks: number;
  atimeMs: number;
  mtimeMs: number;
  ctimeMs: number;
}

export type EntryType = "file" | "directory" | "symlink" | "other";

const typeOf = (mode: number) => mode & constants.S_IFMT;

/** Like Node's fs.Stats. */
export class Stats implements RawStat {
  dev!: number;
  ino!: number;
  mode!: number;
  nlink!: number;
  uid!: number;
  gid!: number;
  rdev!: number;
  size!: number;
  blksize!: number;
  blocks!: number;
  atimeMs!: number;
  mtimeMs!: number;
  ctimeMs!: number;
  constructor(raw: RawStat) {
    for (const key of ["dev", "ino", "mode", "nlink", "uid", "gid", "rdev", "size", "blksize", "blocks", "atimeMs", "mtimeMs", "ctimeMs"] as const)
      this[key] = Number(raw[key]);
  }
  get atime(): Date {
    return new Date(this.atimeMs);
  }
  get mtime(): Date {
    return new Date(this.mtimeMs);
  }
  get ctime(): Date {
    return new Date(this.ctimeMs);
  }
  isFile(): boolean {
    return typeOf(this.mode) === constants.S_IFREG;
  }
  isDirectory(): boolean {
    return typeOf(this.mode) === constants.S_IFDIR;
  }
  isSymbolicLink(): boolean {
    return typeOf(this.mode) === constants.S_IFLNK;
  }
  isFIFO(): boolean {
    return typeOf(this.mode) === constants.S_IFIFO;
  }
  isSocket(): boolean {
    return typeOf(this.mode) === constants.S_IFSOCK;
  }
  isCharacterDevice(): boolean {
    return typeOf(this.mode) === constants.S_IFCHR;
  }
  isBlockDevice(): boolean {
    return typeOf(this.mode) === constants.S_IFBLK;
  }
}

/** Like Node's fs.Dirent (readdir with `withFileTypes: true`). */
export class Dirent {
  constructor(
    readonly name: string,
    /** The folder that was read. */
    readonly parentPath: string,
    private readonly type: EntryType,
  ) {}
  isFile(): boolean {
    return this.type === "file";
  }
  isDirectory(): boolean {
    return this.type === "directory";
  }
  isSymbolicLink(): boolean {
    return this.type === "symlink";
  }
}

/** Like the events of Node's fs.promises.watch. */
export interface WatchEvent {
  eventType: "rename" | "change";
  /** Relative to the watched folder ("sub/file" when recursive). */
  filename: string;
}

export type WriteFlags = "w" | "wx" | "a";

export interface ReadFileOptions {
  encoding?: BufferEncoding | null;
  /** Fail (FsLimitError) rather than hold more than this in memory; default 256 MiB. */
  maxBytes?: number;
}

export interface WriteFileOptions {
  /** For a new file (the umask applies); default 0o666. */
  mode?: number;
  /** For string data; default "utf8". */
  encoding?: BufferEncoding;
  /** "w" (default), "wx" (fail if it exists), "a" (append). */
  flag?: WriteFlags;
}

export interface CopyOutOptions {
  /** Bytes of file data the copy may write on the host; default 4 GiB. */
  maxBytes?: number;
}

export interface WatchOptions {
  recursive?: boolean;
  signal?: AbortSignal;
  /** Events queued for a slow reader before the source is paused (or, for host folders, events dropped); default 2048. */
  maxQueue?: number;
}
