// krunbox mcp [flags]: the MCP server on stdio; its flags are the guard rails.
import fs from "node:fs";
import path from "node:path";
import type { Command } from "commander";
import { z } from "zod";
import { ConfigError } from "../errors.js";
import { parseReference } from "../images/reference.js";
import { ANY_REGISTRY } from "../mcp/guards/registry.js";
import type { BindAllowance, McpLimits } from "../mcp/limits.js";
import { parseRule } from "../network/policy.js";
import { isVolumeName, VOLUME_NAME_RULE } from "../volumes/volumes.js";
import { repeatable } from "./args.js";
import type { SetStatus } from "./main.js";

const whole = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
const FLAGS = {
  network: z.enum(["none", "allow-list", "public"]).default("none"),
  "max-sandboxes": whole(1, 1024).default(4),
  "max-memory": whole(64, 1 << 30).default(4096),
  "max-cpus": whole(1, 64).default(4),
  "idle-timeout": whole(0, 7 * 24 * 3600).default(600),
  "max-output": whole(1024, 64 << 20).default(32 << 10),
  "max-file-bytes": whole(1024, 256 << 20).default(1 << 20),
  "max-list-entries": whole(1, 1 << 20).default(1000),
  "volume-quota": z.union([z.literal("none").transform(() => null), whole(16, 16 << 20)]).default(1024),
  "python-image": z.string().default("python:3-slim"),
  "node-image": z.string().default("node:lts-slim"),
};
// Repeatable flags: what each allows when it is not given.
const LISTS = {
  allowBind: [] as string[],
  allowVolume: ["mcp-*"],
  allowRegistry: [ANY_REGISTRY],
  allowHost: ["*"],
};

function flag<K extends keyof typeof FLAGS>(name: K, value: string | undefined): z.output<(typeof FLAGS)[K]> {
  const result = FLAGS[name].safeParse(value);
  if (!result.success) throw new ConfigError(`--${name}`, `--${name} ${value}: ${result.error.issues[0].message}`);
  return result.data as z.output<(typeof FLAGS)[K]>;
}

/** --allow-bind DIR or DIR:ro, as a real path. */
function allowance(value: string): BindAllowance {
  const readOnly = value.endsWith(":ro");
  const dir = readOnly ? value.slice(0, -3) : value;
  try {
    const real = fs.realpathSync(path.resolve(dir));
    if (fs.statSync(real).isDirectory()) return { dir: real, readOnly };
  } catch {
    // reported below
  }
  throw new ConfigError("--allow-bind", `--allow-bind ${value}: ${dir} is not an existing folder`);
}

/** --allow-volume NAME, PREFIX* or *; "none" alone allows none. */
function volumePatterns(values: string[]): string[] {
  if (values.length === 1 && values[0] === "none") return [];
  for (const v of values)
    if (v !== "*" && !isVolumeName(v.endsWith("*") ? `${v.slice(0, -1)}x` : v))
      throw new ConfigError("--allow-volume", `--allow-volume ${v}: a volume name, a prefix ending in "*", "*" or "none" (${VOLUME_NAME_RULE})`);
  return values;
}

/** --allow-registry HOST[:PORT] or *. */
function registryEntry(value: string): string {
  if (value === ANY_REGISTRY) return value;
  let registry: string | undefined;
  try {
    registry = parseReference(`${value}/x`, "--allow-registry").registry;
  } catch {
    // reported below
  }
  if (registry?.toLowerCase() !== value.toLowerCase())
    throw new ConfigError("--allow-registry", `--allow-registry ${value}: a registry host with an optional port ("ghcr.io", "localhost:5000") or "*"`);
  return value.toLowerCase();
}

/** --allow-host: a rule of the network policy. */
function hostRule(value: string) {
  const rule = parseRule(value);
  if (!rule) throw new ConfigError("--allow-host", `--allow-host ${value}: a host name, "*.suffix", an IP address or prefix, or "*", with an optional ":port"`);
  return rule;
}

/** The flags as commander hands them over: strings, checked by FLAGS (so errors name the flag and its value). */
interface McpFlags extends Partial<Record<keyof typeof LISTS, string[]>> {
  network?: string;
  allowPublish?: boolean;
  maxSandboxes?: string;
  maxMemory?: string;
  maxCpus?: string;
  idleTimeout?: string;
  maxOutput?: string;
  maxFileBytes?: string;
  maxListEntries?: string;
  volumeQuota?: string;
  pythonImage?: string;
  nodeImage?: string;
}

async function mcp(flags: McpFlags): Promise<number> {
  const list = (name: keyof typeof LISTS) => flags[name] ?? LISTS[name];
  const network = flag("network", flags.network);
  if (flags.allowHost && network === "none")
    throw new ConfigError("--allow-host", "--allow-host: sandboxes get no network with --network none; add --network allow-list or public");
  const limits: McpLimits = {
    allowBind: list("allowBind").map(allowance),
    allowVolumes: volumePatterns(list("allowVolume")),
    volumeQuotaMiB: flag("volume-quota", flags.volumeQuota),
    allowRegistries: list("allowRegistry").map(registryEntry),
    network,
    allowHosts: list("allowHost").map(hostRule),
    allowPublish: flags.allowPublish ?? false,
    maxSandboxes: flag("max-sandboxes", flags.maxSandboxes),
    maxMemoryMiB: flag("max-memory", flags.maxMemory),
    maxCpus: flag("max-cpus", flags.maxCpus),
    idleTimeoutMs: flag("idle-timeout", flags.idleTimeout) * 1000,
    maxOutputBytes: flag("max-output", flags.maxOutput),
    maxFileBytes: flag("max-file-bytes", flags.maxFileBytes),
    maxListEntries: flag("max-list-entries", flags.maxListEntries),
    images: { python: flag("python-image", flags.pythonImage), node: flag("node-image", flags.nodeImage) },
  };
  parseReference(limits.images.python, "--python-image");
  parseReference(limits.images.node, "--node-image");
  // Loaded on demand: the MCP SDK is big, and only this command needs it.
  const { serveMcp } = await import("../mcp/server.js");
  await serveMcp(limits);
  return 0;
}

const described = (name: keyof typeof FLAGS, what: string) => `${what} (default ${FLAGS[name].parse(undefined)})`;
const listed = (name: keyof typeof LISTS, what: string) => `${what} (repeatable; default: ${LISTS[name].join(", ") || "none"})`;

export function mcpCommand(parent: Command, setStatus: SetStatus): Command {
  return parent
    .command("mcp")
    .description("serve sandboxes as tools to an AI client: a Model Context Protocol server on stdio; its flags are the guard rails")
    .option("--allow-bind <dir[:ro]>", listed("allowBind", "bind volumes only of folders inside DIR (read-only ones with :ro)"), repeatable())
    .option("--allow-volume <name>", listed("allowVolume", 'named volumes sandboxes may use: NAME, PREFIX*, "*", or "none"'), repeatable())
    .option(
      "--allow-registry <host[:port]>",
      listed("allowRegistry", 'registries model-named images may come from, or "*"; loopback, private and link-local addresses only for registries listed by name'),
      repeatable(),
    )
    .option("--network <mode>", described("network", 'the most network a sandbox may get: "none", "allow-list" (policies that list their destinations) or "public"'))
    .option("--allow-host <pattern>", listed("allowHost", 'destinations a sandbox\'s network may allow: name, *.suffix, IP, prefix, "*", with ":PORT"'), repeatable())
    .option("--allow-publish", "let sandboxes publish guest ports, on the host's loopback and free ports (default: not)")
    .option("--max-sandboxes <n>", described("max-sandboxes", "sandboxes running at once"))
    .option("--max-memory <MiB>", described("max-memory", "guest memory of all running sandboxes together"))
    .option("--max-cpus <n>", described("max-cpus", "virtual CPUs of one sandbox"))
    .option("--idle-timeout <seconds>", described("idle-timeout", "stop a sandbox no tool call has used for this long; 0: never"))
    .option("--max-output <bytes>", described("max-output", "bytes kept of each of stdout and stderr per call"))
    .option("--max-file-bytes <bytes>", described("max-file-bytes", "bytes one sandbox_read_file or sandbox_write_file call may carry"))
    .option("--max-list-entries <n>", described("max-list-entries", "entries one sandbox_list_files call returns"))
    .option(
      "--volume-quota <MiB|none>",
      described("volume-quota", 'the quota of each named volume a tool call creates (needs root); "none": no quota, a volume may fill the disk'),
    )
    .option("--python-image <ref>", described("python-image", "image of throwaway python sandboxes"))
    .option("--node-image <ref>", described("node-image", "image of throwaway node sandboxes"))
    .action(async (flags: McpFlags) => setStatus(await mcp(flags)));
}
