// Guard rails of `krunbox mcp`, set on its command line by whoever starts
// it and never by the model: a tool call that asks for more gets a
// LimitError that names the limit and the flag that sets it. The checks
// on what a sandbox may reach live in guards/.
import { LimitError } from "../errors.js";
import type { NetRule } from "../vm/options.js";

/** A folder bind volumes may come from: its real path (symlinks resolved). */
export interface BindAllowance {
  dir: string;
  /** Only read-only binds of it. */
  readOnly: boolean;
}

/** The most network a model may give a sandbox (--network). */
export type NetworkCeiling = "none" | "allow-list" | "public";

export interface McpLimits {
  allowBind: BindAllowance[];
  /** Named volumes tool calls may use: names, or prefixes ending in "*"; empty: none. */
  allowVolumes: string[];
  /** The quota (MiB) of each named volume a tool call creates; null: none (a volume may fill the host's disk). */
  volumeQuotaMiB: number | null;
  /** Registries model-named images may come from: "*" (any at a public address) or HOST[:PORT]. */
  allowRegistries: string[];
  network: NetworkCeiling;
  /** The destinations a sandbox may be allowed, in the policy's own rule forms. */
  allowHosts: NetRule[];
  /** Whether guest ports may be published (on the host's loopback, on free ports). */
  allowPublish: boolean;
  maxSandboxes: number;
  /** Memory of all of this server's sandboxes together, in MiB. */
  maxMemoryMiB: number;
  /** vCPUs of one sandbox. */
  maxCpus: number;
  /** A sandbox no tool call has used for this long is stopped; 0: never. */
  idleTimeoutMs: number;
  /** Bytes kept of each of stdout and stderr in one tool result. */
  maxOutputBytes: number;
  /** Bytes one sandbox_read_file or sandbox_write_file may carry. */
  maxFileBytes: number;
  /** Entries one sandbox_list_files returns. */
  maxListEntries: number;
  /** Images of throwaway sandboxes for sandbox_run_code. */
  images: { python: string; node: string };
}

export const SET_BY_OPERATOR = "set by whoever started `krunbox mcp`, not by a tool call";

/** Refuses a sandbox that would take the server past --max-cpus, --max-sandboxes or --max-memory. */
export function checkCapacity(limits: McpLimits, used: { count: number; memoryMiB: number }, asked: { cpus: number; memoryMiB: number }): void {
  if (asked.cpus > limits.maxCpus)
    throw new LimitError(
      "--max-cpus",
      `refused: cpus ${asked.cpus} is more than the ${limits.maxCpus} a sandbox may have (--max-cpus, ${SET_BY_OPERATOR}); ask for fewer`,
    );
  if (used.count + 1 > limits.maxSandboxes)
    throw new LimitError(
      "--max-sandboxes",
      `refused: this server runs at most ${limits.maxSandboxes} sandbox(es) at once (--max-sandboxes, ${SET_BY_OPERATOR}); stop one with sandbox_stop first`,
    );
  const total = used.memoryMiB + asked.memoryMiB;
  if (total > limits.maxMemoryMiB)
    throw new LimitError(
      "--max-memory",
      `refused: memoryMiB ${asked.memoryMiB} would bring this server's sandboxes to ${total} MiB, past the ${limits.maxMemoryMiB} MiB ` +
        `they may use together (--max-memory, ${SET_BY_OPERATOR}); ask for less memory or stop a sandbox`,
    );
}
