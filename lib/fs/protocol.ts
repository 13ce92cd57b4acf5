// The file protocol between sb.fs and the guest agent; its C++ twin is
// src/common/fs_protocol.h, which documents the frames and requests (keep
// the two in step). Framing is the exec protocol's (lib/sandbox/protocol.ts).
export const FS_PROTOCOL_VERSION = 1;
/** File contents travel in DATA frames of at most this size. */
export const FS_CHUNK = 256 * 1024;
/** Paths and symlink targets, as the kernel's PATH_MAX. */
export const FS_MAX_PATH = 4096;

export enum FsFrame {
  Hello = 1,
  Request = 2,
  Ok = 3,
  Error = 4,
  Data = 5,
  End = 6,
  Entry = 7,
  Done = 8,
  Entries = 9,
  Event = 10,
}
