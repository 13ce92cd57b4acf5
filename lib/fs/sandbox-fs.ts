// sb.fs: the file API (lib/fs/base.ts) through the guest agent's file
// service (src/agent/fs_*.cc), as the sandbox's user, on the guest's view of
// paths (root overlay, volumes, tmpfs). Each call takes a connection (a
// worker process in the guest) from a small pool; streams, copies and
// watches hold theirs until they end.
import fs from "node:fs/promises";
import path from "node:path";
import { Readable, Writable } from "node:stream";
import { AgentProtocolError, FsError, FsLimitError, KrunboxError } from "../errors.js";
import { parseJsonFrame } from "../sandbox/protocol.js";
import { FileSystem } from "./base.js";
import { FsConnection, type Frame } from "./connection.js";
import { fsError } from "./errors.js";
import { FS_CHUNK, FS_MAX_PATH, FsFrame } from "./protocol.js";
import type { TreeEntry } from "./tree.js";
import type { EntryType, RawStat, WriteFlags } from "./types.js";
import { EventQueue, watchBeneath } from "./watch.js";

// Idle connections kept for the next call (each is a process in the guest).
const MAX_IDLE = 4;
// Connections open at once, streams and watches included (the agent serves
// at most 128 workers): more calls wait for one to end.
const MAX_OPEN = 64;
// readdir entries turned into JavaScript strings at most.
const MAX_ENTRIES = 1 << 20;
const ENTRY_TYPES = new Set(["file", "directory", "symlink", "other"]);

export interface SandboxFsOptions {
  socketPath: string;
  /** Who the guest worker runs as ("" for the image's default user). */
  user: string;
  /** Relative paths resolve against it. */
  workdir: string;
  /** Host folders (or single files) mounted in the guest: host-side writes to them are watched on the host. */
  shares: { hostPath: string; guestPath: string }[];
  /** Why the sandbox cannot serve calls, if it cannot. */
  gone: () => KrunboxError | undefined;
  /** Explains a connection that dropped. */
  whyClosed: () => Promise<KrunboxError>;
}

const unexpected = (f: Frame, what: string) => new AgentProtocolError(`the guest agent sent frame type ${f.type} ${what}`);

/** The guest's ERROR frame as an FsError; `display` replaces the guest's path (the caller's own spelling). */
function guestError(f: Frame, display?: string, dest?: string): FsError {
  const j = parseJsonFrame("ERROR", f.payload);
  const guestPath = typeof j.path === "string" ? j.path.slice(0, FS_MAX_PATH) : "";
  return fsError(Number(j.errno), typeof j.syscall === "string" ? j.syscall : "io", display ?? guestPath, dest);
}

function parseEntry(f: Frame): TreeEntry {
  const j = parseJsonFrame("ENTRY", f.payload);
  const { path: p, type, mode, target } = j;
  if (typeof p !== "string" || (type !== "file" && type !== "directory" && type !== "symlink") || typeof mode !== "number")
    throw new AgentProtocolError("the guest agent sent a malformed ENTRY frame");
  if (type === "symlink" && typeof target !== "string") throw new AgentProtocolError("the guest agent sent a symlink ENTRY without a target");
  return { path: p, type, mode, target: target as string | undefined };
}

export class SandboxFs extends FileSystem {
  #o: SandboxFsOptions;
  #idle: FsConnection[] = [];
  #open = 0;
  #waiting: (() => void)[] = [];

  /** @internal Use `sb.fs`. */
  constructor(options: SandboxFsOptions) {
    super();
    this.#o = options;
  }

  #guestPath(p: string): string {
    return path.posix.resolve(this.#o.workdir, p);
  }

  // A connection for one call, which gives it back with #release exactly once.
  async #acquire(): Promise<FsConnection> {
    for (;;) {
      const gone = this.#o.gone();
      if (gone) throw gone;
      for (let c = this.#idle.pop(); c; c = this.#idle.pop()) {
        if (c.open) {
          c.ref();
          return c;
        }
        this.#open--; // the guest closed it while idle
      }
      if (this.#open < MAX_OPEN) {
        this.#open++;
        try {
          return await FsConnection.open(this.#o.socketPath, this.#o.user, this.#o.whyClosed);
        } catch (err) {
          this.#open--;
          this.#waiting.shift()?.();
          throw err;
        }
      }
      await new Promise<void>((resolve) => this.#waiting.push(resolve));
    }
  }

  /** Back to the pool if it is in step with the guest (`reusable`), else closed. */
  #release(c: FsConnection, reusable: boolean): void {
    if (reusable && c.open && this.#idle.length < MAX_IDLE) {
      c.unref();
      this.#idle.push(c);
    } else {
      c.close();
      this.#open--;
    }
    this.#waiting.shift()?.();
  }

  /** @internal Closes the idle connections (the sandbox is stopping); waiting calls then fail. */
  closeIdle(): void {
    for (const c of this.#idle.splice(0)) {
      c.close();
      this.#open--;
    }
    this.#waiting.splice(0).forEach((wake) => wake());
  }

  // A request answered by OK (or ERROR), with `onFrame` for frames before it.
  async #call(display: string, req: object, onFrame?: (f: Frame) => void, dest?: string): Promise<Record<string, unknown>> {
    const c = await this.#acquire();
    let inStep = false;
    try {
      await c.write(FsFrame.Request, JSON.stringify(req));
      for (;;) {
        const f = await c.next();
        if (f.type === FsFrame.Ok || f.type === FsFrame.Error) {
          inStep = true;
          if (f.type === FsFrame.Error) throw guestError(f, display, dest);
          return parseJsonFrame("OK", f.payload);
        }
        if (!onFrame) throw unexpected(f, "before OK");
        onFrame(f);
      }
    } finally {
      this.#release(c, inStep);
    }
  }

  // A stream's request: its connection once the guest said OK.
  async #begin(display: string, req: object): Promise<{ c: FsConnection; ok: Record<string, unknown> }> {
    const c = await this.#acquire();
    let f: Frame | undefined;
    try {
      await c.write(FsFrame.Request, JSON.stringify(req));
      f = await c.next();
      if (f.type === FsFrame.Ok) return { c, ok: parseJsonFrame("OK", f.payload) };
      throw f.type === FsFrame.Error ? guestError(f, display) : unexpected(f, "instead of OK");
    } catch (err) {
      this.#release(c, f?.type === FsFrame.Error);
      throw err;
    }
  }

  protected async statRaw(p: string, follow: boolean): Promise<RawStat> {
    return (await this.#call(p, { op: "stat", path: this.#guestPath(p), follow })) as unknown as RawStat;
  }

  protected async readdirRaw(p: string): Promise<{ name: string; type: EntryType }[]> {
    const out: { name: string; type: EntryType }[] = [];
    await this.#call(p, { op: "readdir", path: this.#guestPath(p) }, (f) => {
      if (f.type !== FsFrame.Entries) throw unexpected(f, "in a readdir");
      let batch: unknown;
      try {
        batch = JSON.parse(f.payload.toString("utf8"));
      } catch {
        // reported below
      }
      if (!Array.isArray(batch)) throw new AgentProtocolError("the guest agent sent a malformed ENTRIES frame");
      for (const e of batch) {
        if (!Array.isArray(e) || typeof e[0] !== "string" || !ENTRY_TYPES.has(e[1]))
          throw new AgentProtocolError("the guest agent sent a malformed ENTRIES frame");
        if (out.length === MAX_ENTRIES)
          throw new FsLimitError(p, "entries", `holds more than ${MAX_ENTRIES} entries; list it from a process in the sandbox`);
        out.push({ name: e[0], type: e[1] });
      }
    });
    return out;
  }

  protected async mkdirRaw(p: string, recursive: boolean, mode: number): Promise<void> {
    await this.#call(p, { op: "mkdir", path: this.#guestPath(p), recursive, mode });
  }

  protected async rmRaw(p: string, recursive: boolean, force: boolean): Promise<void> {
    await this.#call(p, { op: "rm", path: this.#guestPath(p), recursive, force });
  }

  protected async renameRaw(from: string, to: string): Promise<void> {
    await this.#call(from, { op: "rename", from: this.#guestPath(from), to: this.#guestPath(to) }, undefined, to);
  }

  protected async openRead(p: string): Promise<{ size: number; stream: Readable }> {
    const { c, ok } = await this.#begin(p, { op: "read", path: this.#guestPath(p) });
    let released = false;
    const release = (reusable: boolean) => {
      if (!released) this.#release(c, reusable);
      released = true;
    };
    let pumping = false;
    // Pulls DATA frames while the reader wants more: a slow reader pauses
    // the connection, and the guest waits for vsock credit.
    const pump = async () => {
      pumping = true;
      try {
        for (;;) {
          const f = await c.next();
          if (f.type === FsFrame.Data) {
            if (!stream.push(f.payload)) return;
          } else if (f.type === FsFrame.End) {
            release(true);
            stream.push(null);
            return;
          } else if (f.type === FsFrame.Error) {
            release(true);
            return void stream.destroy(guestError(f, p));
          } else {
            throw unexpected(f, "in a file's data");
          }
        }
      } catch (err) {
        stream.destroy(err as Error);
      } finally {
        pumping = false;
      }
    };
    const stream: Readable = new Readable({
      highWaterMark: FS_CHUNK,
      read: () => void (pumping || pump()),
      destroy: (err, done) => {
        release(false);
        done(err);
      },
    });
    return { size: Number(ok.size), stream };
  }

  protected async openWrite(p: string, mode: number, flags: WriteFlags): Promise<Writable> {
    const { c } = await this.#begin(p, { op: "write", path: this.#guestPath(p), mode, flags });
    let released = false;
    const release = (reusable: boolean) => {
      if (!released) this.#release(c, reusable);
      released = true;
    };
    let ended = false;
    // The guest's answer: OK after END, or ERROR (ENOSPC, EIO...) at any time.
    const verdict = c.next();
    const w: Writable = new Writable({
      highWaterMark: FS_CHUNK,
      write: (chunk: Buffer, _encoding, done) => {
        for (let off = 0; off < chunk.length; off += FS_CHUNK) c.send(FsFrame.Data, chunk.subarray(off, off + FS_CHUNK));
        c.drained().then(() => done());
      },
      final: (done) => {
        ended = true;
        c.send(FsFrame.End);
        verdict.then((f) => {
          if (f.type !== FsFrame.Ok) return; // reported below
          release(true);
          done();
        }, done);
      },
      destroy: (err, done) => {
        release(false);
        done(err);
      },
    });
    verdict.then(
      (f) => {
        if (f.type === FsFrame.Ok && ended) return;
        w.destroy(f.type === FsFrame.Error ? guestError(f, p) : unexpected(f, "while a file was written"));
      },
      (err) => w.destroy(err),
    );
    return w;
  }

  protected async *readTree(p: string): AsyncGenerator<TreeEntry> {
    const c = await this.#acquire();
    let inStep = false;
    try {
      await c.write(FsFrame.Request, JSON.stringify({ op: "copyOut", path: this.#guestPath(p) }));
      for (;;) {
        const f = await c.next();
        if (f.type === FsFrame.Done) {
          inStep = true;
          return;
        }
        if (f.type === FsFrame.Error) throw guestError(f);
        if (f.type !== FsFrame.Entry) throw unexpected(f, "in a copy");
        const entry = parseEntry(f);
        if (entry.type !== "file") {
          yield entry;
          continue;
        }
        let ended = false;
        const data = async function* () {
          for (;;) {
            const d = await c.next();
            if (d.type === FsFrame.End) return void (ended = true);
            if (d.type === FsFrame.Error) throw guestError(d);
            if (d.type !== FsFrame.Data) throw unexpected(d, "in a file's data");
            yield d.payload;
          }
        };
        yield { ...entry, data: data() };
        if (!ended) throw new AgentProtocolError("a copied file's data was not read to its end");
      }
    } finally {
      this.#release(c, inStep);
    }
  }

  protected async writeTree(p: string, entries: AsyncIterable<TreeEntry>): Promise<void> {
    const { c } = await this.#begin(p, { op: "copyIn", path: this.#guestPath(p) });
    let inStep = false;
    try {
      let answered = false;
      const verdict = c.next();
      verdict.then(
        () => (answered = true),
        () => (answered = true),
      );
      // An early answer is an ERROR: stop sending, and read it below.
      send: for await (const e of entries) {
        if (answered) break;
        await c.write(FsFrame.Entry, JSON.stringify({ path: e.path, type: e.type, mode: e.mode, target: e.target }));
        if (e.type !== "file") continue;
        for await (const chunk of e.data ?? []) {
          for (let off = 0; off < chunk.length; off += FS_CHUNK) await c.write(FsFrame.Data, chunk.subarray(off, off + FS_CHUNK));
          if (answered) break send;
        }
        await c.write(FsFrame.End);
      }
      if (!answered) await c.write(FsFrame.Done);
      const f = await verdict;
      if (f.type === FsFrame.Error) throw guestError(f);
      if (f.type !== FsFrame.Ok) throw unexpected(f, "after a copy");
      inStep = true;
    } finally {
      this.#release(c, inStep);
    }
  }

  protected async watchRaw(p: string, recursive: boolean, queue: EventQueue): Promise<() => void> {
    const guestPath = this.#guestPath(p);
    const { c } = await this.#begin(p, { op: "watch", path: guestPath, recursive });
    const stops = [() => this.#release(c, false)];
    const stop = () => stops.splice(0).forEach((s) => s());
    void (async () => {
      try {
        for (;;) {
          await queue.space(); // a slow reader pauses the guest
          const f = await c.next();
          if (f.type !== FsFrame.Event) throw unexpected(f, "in a watch");
          const { eventType, filename } = parseJsonFrame("EVENT", f.payload);
          if ((eventType !== "rename" && eventType !== "change") || typeof filename !== "string")
            throw new AgentProtocolError("the guest agent sent a malformed EVENT frame");
          queue.push({ eventType, filename: filename.slice(0, FS_MAX_PATH) });
        }
      } catch (err) {
        if (stops.length) queue.fail(err);
      }
    })();
    try {
      // The host's own writes to a mounted folder never reach the guest's
      // inotify (virtio-fs does not forward them): watch those on the host.
      for (const share of this.#o.shares) {
        const g = share.guestPath;
        let rel: string, prefix: string;
        if (guestPath === g || guestPath.startsWith(`${g}/`)) [rel, prefix] = [path.posix.relative(g, guestPath), ""];
        else if (recursive && (guestPath === "/" || g.startsWith(`${guestPath}/`))) [rel, prefix] = ["", path.posix.relative(guestPath, g)];
        else continue;
        let root = share.hostPath;
        if ((await fs.stat(root)).isFile()) {
          // A file bound on its own: watched in its host folder, under its guest name.
          const real = await fs.realpath(root);
          [root, rel, prefix] = [path.dirname(real), path.basename(real), prefix || path.posix.basename(g)];
        }
        stops.push(await watchBeneath(root, rel, { recursive, display: p, folder: g, prefix }, queue));
      }
    } catch (err) {
      stop();
      throw err;
    }
    return stop;
  }
}
