// Each sandbox's private folder for its agent sockets, in the temp folder
// (Unix socket paths are limited to 107 bytes). Its owner holds a lock on
// it while it lives; a host program killed by a signal cannot remove its
// folder, so each new sandbox sweeps folders whose owner is gone.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { loadNative } from "../vm/native.js";

const PREFIX = "krunbox-sb-";
// A folder younger than this may belong to a sandbox between mkdtemp and
// taking its lock.
const GRACE_MS = 60_000;

export interface SocketDir {
  /** The guest agent's exec service. */
  socketPath: string;
  /** The guest agent's file service (sb.fs). */
  fsSocketPath: string;
  /** The agent's port forwarder (published ports, Sandbox.connect). */
  forwardPath: string;
  /** Removes the folder; idempotent. */
  remove(): void;
}

export function createSocketDir(): SocketDir {
  sweepStale();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), PREFIX));
  let lock = loadNative().flock(path.join(dir, "lock"), true);
  return {
    socketPath: path.join(dir, "agent.sock"),
    fsSocketPath: path.join(dir, "fs.sock"),
    forwardPath: path.join(dir, "forward.sock"),
    remove() {
      if (lock < 0) return;
      fs.rmSync(dir, { recursive: true, force: true });
      loadNative().unlock(lock);
      lock = -1;
    },
  };
}

// Only our own folders (the temp folder is shared with other users), only
// those with a lock (older krunbox versions made none: their folder may be
// in use), once past the grace period and when nobody holds the lock.
function sweepStale(): void {
  const tmp = os.tmpdir();
  const uid = process.getuid?.();
  for (const name of fs.readdirSync(tmp)) {
    if (!name.startsWith(PREFIX)) continue;
    const dir = path.join(tmp, name);
    try {
      const st = fs.lstatSync(dir);
      if (!st.isDirectory() || st.uid !== uid || Date.now() - st.mtimeMs < GRACE_MS) continue;
      const lockFile = path.join(dir, "lock");
      if (!fs.existsSync(lockFile)) continue;
      const lock = loadNative().flock(lockFile, true);
      if (lock === -1) continue; // its sandbox is alive
      fs.rmSync(dir, { recursive: true, force: true });
      loadNative().unlock(lock);
    } catch {
      // removed meanwhile, or not ours to touch
    }
  }
}
