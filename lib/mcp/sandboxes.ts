// The sandboxes of one `krunbox mcp` server: the ids the model uses, the
// limits on how many and how much memory, stops after idling, and stopping
// them all when the server ends.
import crypto from "node:crypto";
import { z } from "zod";
import { ConfigError, SandboxStoppedError } from "../errors.js";
import { pullImage, type PullProgress } from "../images/cache.js";
import type { HostConnectionCheck } from "../network/address.js";
import type { SandboxOptions } from "../sandbox/options.js";
import { Sandbox } from "../sandbox/sandbox.js";
import { checkCapacity, type McpLimits } from "./limits.js";

export const sandboxIdSchema = z.string().min(1).describe("a sandbox id from sandbox_create");

export const sandboxSummarySchema = z.object({
  id: sandboxIdSchema,
  image: z.string().describe('the image reference, or "default" (busybox)'),
  cpus: z.number().int(),
  memoryMiB: z.number().int(),
  network: z.enum(["none", "public", "allow-list"]),
  ports: z
    .array(z.object({ guest: z.number().int(), host: z.number().int(), hostIp: z.string() }))
    .describe("published guest ports: connect to hostIp:host on the host to reach guest"),
  createdAt: z.string(),
  activeCalls: z.number().int().describe("tool calls running in it now"),
});
export type SandboxSummary = z.infer<typeof sandboxSummarySchema>;

interface Entry extends SandboxSummary {
  sandbox: Sandbox;
  idleTimer?: NodeJS.Timeout;
}

type CreateOptions = SandboxOptions & { cpus: number; memoryMiB: number };

// Enough to tell the model why a recent id no longer works.
const ENDED_KEPT = 256;
// Stopping: processes get SIGTERM, QEMU is killed after this.
const STOP_GRACE_MS = 2000;

const summary = ({ id, image, cpus, memoryMiB, network, ports, createdAt, activeCalls }: Entry): SandboxSummary => ({
  id,
  image,
  cpus,
  memoryMiB,
  network,
  ports,
  createdAt,
  activeCalls,
});

const shuttingDown = () => new SandboxStoppedError("the krunbox mcp server is shutting down");

export class SandboxRegistry {
  readonly #entries = new Map<string, Entry>();
  readonly #ended = new Map<string, string>();
  /** Creations under way: they count against the limits too. */
  #booting = { count: 0, memoryMiB: 0 };
  readonly #inFlight = new Set<Promise<unknown>>();
  #closed = false;

  constructor(
    private readonly limits: McpLimits,
    private readonly log: (line: string) => void,
  ) {}

  /**
   * Boots a sandbox within the limits; resolves with its summary. `onPull`
   * follows an image pull, `checkConnection` judges each connection it makes.
   */
  async create(
    options: CreateOptions,
    pull: { onPull?: (p: PullProgress) => void; checkConnection?: HostConnectionCheck } = {},
  ): Promise<SandboxSummary> {
    if (this.#closed) throw shuttingDown();
    let count = this.#booting.count;
    let memoryMiB = this.#booting.memoryMiB;
    for (const e of this.#entries.values()) (count++, (memoryMiB += e.memoryMiB));
    checkCapacity(this.limits, { count, memoryMiB }, options);
    this.#booting.count++;
    this.#booting.memoryMiB += options.memoryMiB;
    const image = typeof options.image === "string" ? options.image : undefined;
    const work = (image ? pullImage(image, { onProgress: pull.onPull }, { checkConnection: pull.checkConnection }) : Promise.resolve())
      .then(() => {
        if (this.#closed) throw shuttingDown();
        return Sandbox.create(options);
      })
      .finally(() => {
        this.#booting.count--;
        this.#booting.memoryMiB -= options.memoryMiB;
      })
      .then(async (sandbox) => {
        if (this.#closed) {
          await sandbox.stop(STOP_GRACE_MS);
          throw shuttingDown();
        }
        return this.#add(sandbox, options);
      });
    this.#inFlight.add(work);
    try {
      return await work;
    } finally {
      this.#inFlight.delete(work);
    }
  }

  #add(sandbox: Sandbox, options: CreateOptions): SandboxSummary {
    let id: string;
    do id = `sb-${crypto.randomBytes(4).toString("hex")}`;
    while (this.#entries.has(id) || this.#ended.has(id));
    const image = typeof options.image === "string" ? options.image : "default";
    const network = typeof options.network === "object" ? "allow-list" : (options.network ?? "none");
    const { cpus, memoryMiB } = options;
    const createdAt = new Date().toISOString();
    const entry: Entry = { id, image, cpus, memoryMiB, network, ports: sandbox.ports, createdAt, activeCalls: 0, sandbox };
    this.#entries.set(id, entry);
    sandbox.closed.catch((err: Error) => {
      if (this.#forget(id, `its VM crashed (${err.message})`)) this.log(`sandbox ${id} crashed: ${err.message}`);
    });
    this.#armIdleTimer(entry);
    return summary(entry);
  }

  /** Runs `fn` on a sandbox; it does not count as idle meanwhile. */
  async use<T>(id: string, fn: (sandbox: Sandbox) => Promise<T>): Promise<T> {
    const entry = this.#get(id);
    entry.activeCalls++;
    clearTimeout(entry.idleTimer);
    try {
      return await fn(entry.sandbox);
    } finally {
      entry.activeCalls--;
      this.#armIdleTimer(entry);
    }
  }

  /** Boots a sandbox for one call, then stops it. */
  async once<T>(options: CreateOptions, onPull: ((p: PullProgress) => void) | undefined, fn: (sandbox: Sandbox) => Promise<T>): Promise<T> {
    const { id } = await this.create(options, { onPull });
    try {
      return await this.use(id, fn);
    } finally {
      // Unless the server's shutdown or a crash ended it first.
      if (this.#entries.has(id)) await this.stop(id, "it was a throwaway sandbox of sandbox_run_code");
    }
  }

  async stop(id: string, why = "sandbox_stop stopped it"): Promise<void> {
    const entry = this.#get(id);
    this.#forget(id, why);
    await entry.sandbox.stop(STOP_GRACE_MS);
  }

  list(): SandboxSummary[] {
    return [...this.#entries.values()].map(summary);
  }

  /** Stops every sandbox, including those still booting; no new ones start. */
  async close(): Promise<void> {
    this.#closed = true;
    const stops = [...this.#entries.keys()].map((id) => this.stop(id, "the server shut down").catch(() => {}));
    await Promise.allSettled([...stops, ...this.#inFlight]);
  }

  #get(id: string): Entry {
    const entry = this.#entries.get(id);
    if (entry) return entry;
    const ended = this.#ended.get(id);
    throw new ConfigError("id", ended ? `id: sandbox ${id} has ended: ${ended}` : `id: no sandbox "${id}" on this server; sandbox_list lists them`);
  }

  #armIdleTimer(entry: Entry): void {
    if (!this.limits.idleTimeoutMs || entry.activeCalls > 0 || !this.#entries.has(entry.id)) return;
    clearTimeout(entry.idleTimer);
    entry.idleTimer = setTimeout(() => {
      const seconds = this.limits.idleTimeoutMs / 1000;
      this.log(`stopping sandbox ${entry.id}: no tool call used it for ${seconds} s (--idle-timeout)`);
      void this.stop(entry.id, `no tool call used it for ${seconds} s, so the server stopped it (--idle-timeout ${seconds}, set by whoever started \`krunbox mcp\`)`).catch(
        () => {},
      );
    }, this.limits.idleTimeoutMs);
  }

  /** Removes the entry and records why; false if it was already gone. */
  #forget(id: string, why: string): boolean {
    const entry = this.#entries.get(id);
    if (!entry) return false;
    clearTimeout(entry.idleTimer);
    this.#entries.delete(id);
    this.#ended.set(id, why);
    if (this.#ended.size > ENDED_KEPT) this.#ended.delete(this.#ended.keys().next().value!);
    return true;
  }
}
