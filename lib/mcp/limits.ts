// Guard rails of `krunbox mcp`, set on its command line by whoever starts
// it and never by the model: a tool call that asks for more gets a
// LimitError that names the limit and the flag that sets it.
import fs from "node:fs";
import path from "node:path";
import { ConfigError, LimitError } from "../errors.js";
import { parseOptions } from "../validate.js";
import { volumesSchema, type VolumeEntry, type VolumeSpec } from "../volumes/spec.js";

/** A folder bind volumes may come from: its real path (symlinks resolved). */
export interface BindAllowance {
  dir: string;
  /** Only read-only binds of it. */
  readOnly: boolean;
}

export const describeAllowance = (a: BindAllowance) => (a.readOnly ? `${a.dir} (read-only)` : a.dir);

export interface McpLimits {
  allowBind: BindAllowance[];
  maxSandboxes: number;
  /** Memory of all of this server's sandboxes together, in MiB. */
  maxMemoryMiB: number;
  /** A sandbox no tool call has used for this long is stopped; 0: never. */
  idleTimeoutMs: number;
  /** Bytes kept of each of stdout and stderr in one tool result. */
  maxOutputBytes: number;
  /** Images of throwaway sandboxes for sandbox_run_code. */
  images: { python: string; node: string };
}

const WHO = "set by whoever started `krunbox mcp`, not by a tool call";

/** Refuses a sandbox that would take the server past --max-sandboxes or --max-memory. */
export function checkCapacity(limits: McpLimits, used: { count: number; memoryMiB: number }, memoryMiB: number): void {
  if (used.count + 1 > limits.maxSandboxes)
    throw new LimitError(
      "--max-sandboxes",
      `refused: this server runs at most ${limits.maxSandboxes} sandbox(es) at once (--max-sandboxes, ${WHO}); stop one with sandbox_stop first`,
    );
  const total = used.memoryMiB + memoryMiB;
  if (total > limits.maxMemoryMiB)
    throw new LimitError(
      "--max-memory",
      `refused: memoryMiB ${memoryMiB} would bring this server's sandboxes to ${total} MiB, past the ${limits.maxMemoryMiB} MiB ` +
        `they may use together (--max-memory, ${WHO}); ask for less memory or stop a sandbox`,
    );
}

function isInside(dir: string, p: string): boolean {
  const rel = path.relative(dir, p);
  return rel === "" || (!rel.startsWith("..") && !path.isAbsolute(rel));
}

/**
 * Checks every bind volume against --allow-bind after resolving symlinks,
 * and returns the volumes with each bind's source replaced by its real
 * path (what was checked is what gets shared). Relative sources resolve
 * against the server's working folder.
 */
export function confineBinds(volumes: VolumeSpec[], limits: McpLimits): VolumeEntry[] {
  return parseOptions(volumesSchema, volumes, "volumes").map((spec, i) => {
    const field = `volumes[${i}]`;
    if (spec.type !== "bind") return spec;
    const asked = path.resolve(spec.source);
    if (!limits.allowBind.length)
      throw new LimitError(
        "--allow-bind",
        `refused: ${field} binds the host folder ${asked}, but this server may share no host folders (no --allow-bind, ${WHO}); ` +
          `use a named or tmpfs volume`,
      );
    let real: string;
    try {
      real = fs.realpathSync(asked);
    } catch {
      throw new ConfigError(`${field}.source`, `${field}.source: host folder ${asked} does not exist`);
    }
    const within = limits.allowBind.filter((a) => isInside(a.dir, real));
    if (!within.length)
      throw new LimitError(
        "--allow-bind",
        `refused: ${field} binds ${asked}${real === asked ? "" : ` (which leads to ${real})`}, outside the folders this server ` +
          `may share: ${limits.allowBind.map(describeAllowance).join(", ")} (--allow-bind, ${WHO})`,
      );
    if (!spec.readOnly && within.every((a) => a.readOnly))
      throw new LimitError(
        "--allow-bind",
        `refused: ${field} binds ${asked} read-write, but this server shares ${within.map((a) => a.dir).join(", ")} only read-only ` +
          `(--allow-bind DIR:ro, ${WHO}); bind it with ":ro" or readOnly: true`,
      );
    return { ...spec, source: real };
  });
}
