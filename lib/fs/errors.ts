// Node-style errors for file operations: from an errno (the guest agent's
// or the addon's) and from the addon's structured failures.
import util from "node:util";
import { FsError, KrunboxError, PathEscapeError, SpecialFileError } from "../errors.js";

const systemErrors = util.getSystemErrorMap();

/** An FsError for a positive errno, named like Node's ("ENOENT", -2). */
export function fsError(errno: number, syscall: string, p: string, dest?: string): FsError {
  const known = Number.isInteger(errno) && errno > 0 && errno < 4096 ? systemErrors.get(-errno) : undefined;
  const [code, description] = known ?? ["EIO", `unknown error ${String(errno).slice(0, 16)}`];
  return new FsError(code, known ? -errno : -5, syscall.slice(0, 64), p, { dest, description });
}

/** Node's own fs errors (from fd streams) with the caller's path. */
export function fromSystemError(err: unknown, p: string): unknown {
  const e = err as NodeJS.ErrnoException;
  if (e instanceof KrunboxError || typeof e?.errno !== "number") return err;
  return fsError(-e.errno, e.syscall ?? "io", p);
}

/**
 * The addon's failure for `p` (the caller's spelling of the path): an
 * escape, a special file, or an errno.
 */
export function fromNative(err: unknown, p: string, folder: string, dest?: string): unknown {
  const e = err as { code?: string; errno?: number; syscall?: string; fileType?: string };
  if (e?.code === "ERR_KRUNBOX_PATH_ESCAPE") return new PathEscapeError(p, folder);
  if (e?.code === "ERR_KRUNBOX_SPECIAL_FILE") return new SpecialFileError(p, e.fileType ?? "special file");
  if (e?.code === "ERR_KRUNBOX_FS") return fsError(e.errno ?? 5, e.syscall ?? "io", p, dest);
  return err;
}
