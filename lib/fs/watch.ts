// Watching: the async iterator that sb.fs.watch and vol.fs.watch return,
// and a watcher of host folders that a guest can write to (volumes), which
// never leaves the folder whatever symlinks the guest makes.
import fs from "node:fs";
import path from "node:path";
import { FsLimitError } from "../errors.js";
import { loadNative } from "../vm/native.js";
import { fromNative, fromSystemError } from "./errors.js";
import { beneath } from "./tree.js";
import type { WatchEvent } from "./types.js";

// Folders one recursive host watch may hold (each is an inotify watch of
// this user's, a limited resource; the guest decides how many there are).
const MAX_HOST_FOLDERS = 8192;
// The same event from two sources (the guest's inotify and the host's, for
// a volume the guest writes to) within this window is reported once.
const DUPLICATE_WINDOW_MS = 50;

function abortError(signal: AbortSignal): Error {
  return Object.assign(new Error("The watch was aborted", { cause: signal.reason }), { name: "AbortError", code: "ABORT_ERR" });
}

/**
 * Events queued for the reader of a watch. Sources push; a full queue
 * tells them to pause (`space()`), or drops what cannot pause. Ending the
 * iteration, an error or the signal stops every source.
 */
export class EventQueue implements AsyncIterableIterator<WatchEvent> {
  #events: WatchEvent[] = [];
  #recent = new Map<string, number>();
  #waiter: { resolve: (r: IteratorResult<WatchEvent>) => void; reject: (err: unknown) => void } | undefined;
  #spaceWaiters: (() => void)[] = [];
  #error: unknown;
  #done = false;
  #stops: (() => void)[] = [];
  #begin: (() => Promise<() => void>) | undefined;

  /**
   * `begin` starts the sources when the watch is first iterated (as
   * fs.promises.watch does) and resolves with what stops them.
   */
  constructor(
    private readonly maxQueue: number,
    signal: AbortSignal | undefined,
    begin: (queue: EventQueue) => Promise<() => void>,
  ) {
    this.#begin = () => begin(this);
    if (signal?.aborted) this.fail(abortError(signal));
    else if (signal) {
      const onAbort = () => this.fail(abortError(signal));
      signal.addEventListener("abort", onAbort, { once: true });
      this.#stops.push(() => signal.removeEventListener("abort", onAbort));
    }
  }

  /** Queues an event (dropped when full); false once the queue is full. */
  push(e: WatchEvent): boolean {
    if (this.#done) return false;
    const key = `${e.eventType}\0${e.filename}`;
    const now = Date.now();
    for (const [k, at] of this.#recent) {
      if (now - at <= DUPLICATE_WINDOW_MS) break;
      this.#recent.delete(k);
    }
    if (this.#recent.has(key)) return this.#events.length < this.maxQueue;
    this.#recent.set(key, now);
    if (this.#waiter) {
      const w = this.#waiter;
      this.#waiter = undefined;
      w.resolve({ value: e, done: false });
    } else if (this.#events.length < this.maxQueue) {
      this.#events.push(e);
    }
    return this.#events.length < this.maxQueue;
  }

  /** Resolves when the reader has taken enough for the queue to have room. */
  space(): Promise<void> {
    if (this.#done || this.#events.length < this.maxQueue) return Promise.resolve();
    return new Promise((resolve) => this.#spaceWaiters.push(resolve));
  }

  fail(err: unknown): void {
    if (this.#done) return;
    this.#begin = undefined;
    this.#error = err;
    this.#finish();
  }

  #finish() {
    this.#done = true;
    this.#stops.splice(0).forEach((stop) => stop());
    this.#spaceWaiters.splice(0).forEach((wake) => wake());
    const w = this.#waiter;
    this.#waiter = undefined;
    if (w && this.#error !== undefined) w.reject(this.#error);
    else w?.resolve({ value: undefined, done: true });
  }

  next(): Promise<IteratorResult<WatchEvent>> {
    const begin = this.#begin;
    this.#begin = undefined;
    if (begin && !this.#done)
      begin().then(
        (stop) => (this.#done ? stop() : this.#stops.push(stop)),
        (err) => this.fail(err),
      );
    const e = this.#events.shift();
    if (e) {
      if (this.#events.length < this.maxQueue) this.#spaceWaiters.splice(0).forEach((wake) => wake());
      return Promise.resolve({ value: e, done: false });
    }
    if (this.#error !== undefined) {
      const err = this.#error;
      this.#error = null; // reported once; then the iterator is done
      return Promise.reject(err);
    }
    if (this.#done) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => (this.#waiter = { resolve, reject }));
  }

  async return(): Promise<IteratorResult<WatchEvent>> {
    this.#begin = undefined;
    if (!this.#done) this.#finish();
    return { value: undefined, done: true };
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<WatchEvent> {
    return this;
  }
}

const join = (a: string, b: string) => (a && b ? `${a}/${b}` : a || b);

/**
 * Watches `rel` beneath `root` with the host's inotify (Node's fs.watch).
 * Each folder is opened through the addon (RESOLVE_BENEATH) and watched
 * through its /proc/self/fd link, so the watch is on the very folder that
 * was checked: a guest swapping in a symlink cannot point it elsewhere.
 * Event names are reported relative to `rel`, under `prefix`.
 */
export async function watchBeneath(
  root: string,
  rel: string,
  options: { recursive: boolean; display: string; folder: string; prefix?: string },
  queue: EventQueue,
): Promise<() => void> {
  const native = loadNative().beneath;
  const { recursive, display, folder } = options;
  const prefix = options.prefix ?? "";
  const watchers = new Map<string, fs.FSWatcher>();
  const adding = new Set<string>();
  let stopped = false;
  const stop = () => {
    stopped = true;
    for (const w of watchers.values()) w.close();
    watchers.clear();
  };
  const emit = (eventType: "rename" | "change", filename: string) => queue.push({ eventType, filename: join(prefix, filename) });

  const top = await beneath(display, folder, () => native.stat(root, rel, true));
  if ((top.mode & fs.constants.S_IFMT) !== fs.constants.S_IFDIR) {
    // A single file: every event is about it (`prefix` names it, if given).
    const name = prefix || path.posix.basename(rel || display);
    const { fd } = await beneath(display, folder, () => native.openRead(root, rel, true));
    try {
      let w: fs.FSWatcher;
      try {
        w = fs.watch(`/proc/self/fd/${fd}`);
      } catch (err) {
        throw fromSystemError(err, display);
      }
      w.on("change", (type) => queue.push({ eventType: type as "rename" | "change", filename: name }));
      w.on("error", () => w.close());
      watchers.set("", w);
    } finally {
      fs.closeSync(fd);
    }
    return stop;
  }

  const drop = (sub: string) => {
    for (const [key, w] of watchers)
      if (key === sub || key.startsWith(`${sub}/`)) {
        w.close();
        watchers.delete(key);
      }
  };
  const onEvent = (sub: string, type: "rename" | "change", name: string) => {
    // "." is the watched folder itself (the path ends in "/."): a subfolder's
    // own removal is reported by its parent.
    if (name === ".") {
      if (!sub) emit("rename", path.posix.basename(prefix || rel || display));
      return;
    }
    const filename = join(sub, name);
    emit(type, filename);
    if (recursive && type === "rename")
      native.stat(root, join(rel, filename), false).then(
        (st) => {
          if ((st.mode & fs.constants.S_IFMT) === fs.constants.S_IFDIR) void add(filename, true).catch(() => {});
        },
        () => drop(filename),
      );
  };
  // Watches `sub` and, recursively, its folders; `report`: also report what
  // a new folder already holds (it may predate the watch).
  const add = async (sub: string, report: boolean): Promise<void> => {
    if (stopped || watchers.has(sub) || adding.has(sub)) return;
    if (watchers.size >= MAX_HOST_FOLDERS) {
      queue.fail(new FsLimitError(display, "recursive", `holds more than ${MAX_HOST_FOLDERS} folders to watch on the host; watch a smaller tree`));
      return;
    }
    let fd: number;
    adding.add(sub);
    try {
      fd = await native.openDir(root, join(rel, sub), sub === "");
    } catch (err) {
      if (!sub) throw fromNative(err, display, folder);
      return; // gone, or swapped for something else, meanwhile
    } finally {
      adding.delete(sub);
    }
    try {
      if (stopped) return;
      let w: fs.FSWatcher;
      try {
        w = fs.watch(`/proc/self/fd/${fd}/.`);
      } catch (err) {
        throw fromSystemError(err, display); // ENOSPC: out of inotify watches
      }
      watchers.set(sub, w);
      w.on("change", (type, name) => onEvent(sub, type as "rename" | "change", String(name)));
      w.on("error", () => drop(sub));
    } finally {
      fs.closeSync(fd);
    }
    if (!recursive) return;
    for (const child of await native.readdir(root, join(rel, sub)).catch(() => [])) {
      const name = join(sub, child.name);
      if (report) emit("rename", name);
      if (child.type === "directory") await add(name, report);
    }
  };
  await add("", false);
  return stop;
}
