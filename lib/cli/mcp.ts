// krunbox mcp [flags]: the MCP server on stdio; its flags are the guard rails.
import fs from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { z } from "zod";
import { ConfigError } from "../errors.js";
import { parseReference } from "../images/reference.js";
import { ANY_REGISTRY } from "../mcp/guards/registry.js";
import type { BindAllowance, McpLimits } from "../mcp/limits.js";
import { serveMcp } from "../mcp/server.js";
import { parseRule } from "../network/policy.js";
import { isVolumeName, VOLUME_NAME_RULE } from "../volumes/volumes.js";

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
  "python-image": z.string().default("python:3-slim"),
  "node-image": z.string().default("node:lts-slim"),
};
// Repeatable flags: what each allows when it is not given.
const LISTS = {
  "allow-bind": [] as string[],
  "allow-volume": ["mcp-*"],
  "allow-registry": [ANY_REGISTRY],
  "allow-host": ["*"],
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

export async function mcp(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      ...(Object.fromEntries(Object.keys(LISTS).map((name) => [name, { type: "string", multiple: true }])) as Record<
        keyof typeof LISTS,
        { type: "string"; multiple: true }
      >),
      ...(Object.fromEntries(Object.keys(FLAGS).map((name) => [name, { type: "string" }])) as Record<keyof typeof FLAGS, { type: "string" }>),
      "allow-publish": { type: "boolean" },
    },
  });
  const list = (name: keyof typeof LISTS) => values[name] ?? LISTS[name];
  const network = flag("network", values.network);
  if (values["allow-host"] && network === "none")
    throw new ConfigError("--allow-host", "--allow-host: sandboxes get no network with --network none; add --network allow-list or public");
  const limits: McpLimits = {
    allowBind: list("allow-bind").map(allowance),
    allowVolumes: volumePatterns(list("allow-volume")),
    allowRegistries: list("allow-registry").map(registryEntry),
    network,
    allowHosts: list("allow-host").map((value) => {
      const rule = parseRule(value);
      if (!rule) throw new ConfigError("--allow-host", `--allow-host ${value}: a host name, "*.suffix", an IP address or prefix, or "*", with an optional ":port"`);
      return rule;
    }),
    allowPublish: values["allow-publish"] ?? false,
    maxSandboxes: flag("max-sandboxes", values["max-sandboxes"]),
    maxMemoryMiB: flag("max-memory", values["max-memory"]),
    maxCpus: flag("max-cpus", values["max-cpus"]),
    idleTimeoutMs: flag("idle-timeout", values["idle-timeout"]) * 1000,
    maxOutputBytes: flag("max-output", values["max-output"]),
    maxFileBytes: flag("max-file-bytes", values["max-file-bytes"]),
    maxListEntries: flag("max-list-entries", values["max-list-entries"]),
    images: { python: flag("python-image", values["python-image"]), node: flag("node-image", values["node-image"]) },
  };
  parseReference(limits.images.python, "--python-image");
  parseReference(limits.images.node, "--node-image");
  await serveMcp(limits);
  return 0;
}
