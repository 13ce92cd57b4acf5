// krunbox mcp [flags]: the MCP server on stdio; its flags are the guard rails.
import fs from "node:fs";
import path from "node:path";
import type { Command } from "commander";
import { z } from "zod";
import { ConfigError } from "../errors.js";
import { parseReference } from "../images/reference.js";
import type { BindAllowance, McpLimits } from "../mcp/limits.js";
import { repeatable } from "./args.js";
import type { SetStatus } from "./main.js";

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

/** The flags as commander hands them over: strings, checked by FLAGS (so errors name the flag and its value). */
interface McpFlags {
  allowBind?: string[];
  maxSandboxes?: string;
  maxMemory?: string;
  idleTimeout?: string;
  maxOutput?: string;
  pythonImage?: string;
  nodeImage?: string;
}

async function mcp(flags: McpFlags): Promise<number> {
  const limits: McpLimits = {
    allowBind: (flags.allowBind ?? []).map(allowance),
    maxSandboxes: flag("max-sandboxes", flags.maxSandboxes),
    maxMemoryMiB: flag("max-memory", flags.maxMemory),
    idleTimeoutMs: flag("idle-timeout", flags.idleTimeout) * 1000,
    maxOutputBytes: flag("max-output", flags.maxOutput),
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

export function mcpCommand(parent: Command, setStatus: SetStatus): Command {
  return parent
    .command("mcp")
    .description("serve sandboxes as tools to an AI client: a Model Context Protocol server on stdio; its flags are the guard rails")
    .option("--allow-bind <dir[:ro]>", "bind volumes only of folders inside DIR (read-only ones with :ro; repeatable; default: none)", repeatable())
    .option("--max-sandboxes <n>", described("max-sandboxes", "sandboxes running at once"))
    .option("--max-memory <MiB>", described("max-memory", "guest memory of all running sandboxes together"))
    .option("--idle-timeout <seconds>", described("idle-timeout", "stop a sandbox no tool call has used for this long; 0: never"))
    .option("--max-output <bytes>", described("max-output", "bytes kept of each of stdout and stderr per call"))
    .option("--python-image <ref>", described("python-image", "image of throwaway python sandboxes"))
    .option("--node-image <ref>", described("node-image", "image of throwaway node sandboxes"))
    .action(async (flags: McpFlags) => setStatus(await mcp(flags)));
}
