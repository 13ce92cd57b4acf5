// A warm pool: sandboxes booted ahead of time, handed out at once. Volumes
// and env given at acquire time are added to the running sandbox (the
// runner mounts the folder in its share tree, the agent in the guest).
import { EventEmitter } from "node:events";
import { z } from "zod";
import { ConfigError, SandboxStoppedError } from "../errors.js";
import { envRecord, sandboxOptionsSchema, type SandboxOptions } from "../sandbox/options.js";
import { handOut, Sandbox } from "../sandbox/sandbox.js";
import { parseOptions } from "../validate.js";
import { resolveVolumes, volumesSchema, type VolumeSpec } from "../volumes/spec.js";

export const poolOptionsSchema = sandboxOptionsSchema.extend({
  /** Sandboxes kept booted and idle. */
  size: z.number().int().min(1).max(64),
});
export type PoolOptions = SandboxOptions & { size: number };

const acquireOptionsSchema = z.object({ volumes: volumesSchema.default([]), env: envRecord.default({}) }).strict();
export interface AcquireOptions {
  /** Mounted in the running sandbox, as `volumes` of Sandbox.create. */
  volumes?: VolumeSpec[];
  /** Added to the sandbox's environment (wins over the pool's `env`). */
  env?: Record<string, string>;
}

// After a failed boot the next one waits this long, doubling up to the cap.
const RETRY_FIRST_MS = 1000;
const RETRY_MAX_MS = 30_000;

interface Waiter {
  resolve: (sb: Sandbox) => void;
  reject: (err: Error) => void;
}

/**
 * `Sandbox.pool({ size, ...SandboxOptions })`. Keeps `size` sandboxes
 * booted; `acquire()` hands one out (never the same one twice) and boots a
 * replacement in the background. Events: "refillError" (Error) when a
 * replacement fails to boot or an idle sandbox dies; the pool tries again,
 * waiting longer after each failure in a row. `close()` (or `await using`)
 * stops the idle sandboxes; those handed out are the caller's to stop.
 */
export class SandboxPool extends EventEmitter {
  readonly size: number;
  #options: SandboxOptions;
  #baseTargets: Set<string>;
  #idle: Sandbox[] = [];
  #waiters: Waiter[] = [];
  #booting = new Set<Promise<void>>();
  #stopping = new Set<Promise<void>>();
  #failures = 0;
  #retry: NodeJS.Timeout | undefined;
  #closed = false;

  /** Use Sandbox.pool(). Options are checked here (ConfigError), before anything boots. */
  constructor(options: PoolOptions) {
    super();
    const parsed = parseOptions(poolOptionsSchema, options, "");
    const { size, ...sandboxOptions } = options;
    this.size = parsed.size;
    this.#options = sandboxOptions;
    this.#baseTargets = new Set(parsed.volumes.map((v) => v.target));
    this.#fill();
  }

  /** Idle sandboxes, ready to hand out. */
  get idle(): number {
    return this.#idle.length;
  }

  /**
   * A booted sandbox with `volumes` mounted and `env` added; at once when
   * one is idle, else when the next boot ends (rejecting if it fails).
   * Bad options are a ConfigError; a closed pool rejects with
   * SandboxStoppedError.
   */
  async acquire(options: AcquireOptions = {}): Promise<Sandbox> {
    const o = parseOptions(acquireOptionsSchema, options, "");
    o.volumes.forEach((v, i) => {
      if (this.#baseTargets.has(v.target))
        throw new ConfigError(`volumes[${i}].target`, `volumes[${i}].target: "${v.target}" is already a volume of the pool's sandboxes`);
    });
    if (this.#closed) throw new SandboxStoppedError("the pool is closed");
    const volumes = await resolveVolumes(o.volumes);
    // The replacement boots once this hand-out is on its way.
    setImmediate(() => this.#fill());
    const sb = this.#idle.shift() ?? (await new Promise<Sandbox>((resolve, reject) => this.#waiters.push({ resolve, reject })));
    try {
      await sb[handOut](volumes, o.env);
    } catch (err) {
      await sb.stop();
      throw err;
    }
    return sb;
  }

  /** Stops every idle sandbox and every one still booting; acquire() rejects from now on. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#retry);
    for (const w of this.#waiters.splice(0)) w.reject(new SandboxStoppedError("the pool was closed"));
    for (const sb of this.#idle.splice(0)) this.#stop(sb);
    while (this.#booting.size || this.#stopping.size) await Promise.all([...this.#booting, ...this.#stopping]);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #stop(sb: Sandbox) {
    const done = sb.stop().finally(() => this.#stopping.delete(done));
    this.#stopping.add(done);
  }

  #fill() {
    if (this.#closed || this.#retry) return;
    // Waiters count: each takes the next sandbox that boots.
    while (this.#idle.length + this.#booting.size < this.size + this.#waiters.length) {
      const boot = this.#boot().finally(() => this.#booting.delete(boot));
      this.#booting.add(boot);
    }
  }

  async #boot(): Promise<void> {
    let sb: Sandbox;
    try {
      sb = await Sandbox.create(this.#options);
    } catch (err) {
      this.#failed(err as Error);
      return;
    }
    this.#failures = 0;
    if (this.#closed) return this.#stop(sb);
    // An idle sandbox that dies is dropped and replaced.
    sb.closed.catch((err: Error) => {
      const i = this.#idle.indexOf(sb);
      if (i < 0) return;
      this.#idle.splice(i, 1);
      this.emit("refillError", err);
      this.#fill();
    });
    const waiter = this.#waiters.shift();
    if (waiter) waiter.resolve(sb);
    // Boots for waiters that were turned away since may leave one too many.
    else if (this.#idle.length >= this.size) this.#stop(sb);
    else this.#idle.push(sb);
  }

  // Reported, never thrown: the first waiter gets the error, the pool tries
  // again after a pause that grows with each failure in a row.
  #failed(err: Error) {
    this.#waiters.shift()?.reject(err);
    this.emit("refillError", err);
    if (this.#closed) return;
    const wait = Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** this.#failures++);
    clearTimeout(this.#retry);
    this.#retry = setTimeout(() => {
      this.#retry = undefined;
      this.#fill();
    }, wait);
    // A pool that cannot boot must not keep the program alive on its own.
    this.#retry.unref();
  }
}
