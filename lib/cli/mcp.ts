// krunbox mcp [flags]: the MCP server on stdio; its flags are the guard rails.
import fs from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { z } from "zod";
import { ConfigError } from "../errors.js";
import { parseReference } from "../images/reference.js";
import type { BindAllowance, McpLimits } from "../mcp/limits.js";
import { serveMcp } from "../mcp/server.js";

const whole = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
const FLAGS = {
  "max-sandboxes": whole(1, 1024).default(4),
  "max-memory": whole(64, 1 << 30).default(4096),
  "idle-timeout": whole(0, 7 * 24 * 3600).default(600),
  "max-output": whole(1024, 64 << 20).default(32 << 10),
  "python-image": z.string().default("python:3-slim"),
  "node-image": z.string().default("node:lts-slim"),
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

export async function mcp(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      "allow-bind": { type: "string", multiple: true },
      ...(Object.fromEntries(Object.keys(FLAGS).map((name) => [name, { type: "string" }])) as Record<keyof typeof FLAGS, { type: "string" }>),
    },
  });
  const limits: McpLimits = {
    allowBind: (values["allow-bind"] ?? []).map(allowance),
    maxSandboxes: flag("max-sandboxes", values["max-sandboxes"]),
    maxMemoryMiB: flag("max-memory", values["max-memory"]),
    idleTimeoutMs: flag("idle-timeout", values["idle-timeout"]) * 1000,
    maxOutputBytes: flag("max-output", values["max-output"]),
    images: { python: flag("python-image", values["python-image"]), node: flag("node-image", values["node-image"]) },
  };
  parseReference(limits.images.python, "--python-image");
  parseReference(limits.images.node, "--node-image");
  await serveMcp(limits);
  return 0;
}
