// `krunbox mcp`: sandboxes as tools for AI agents, over the Model Context
// Protocol on stdio. The server is a child of the AI client; its
// sandboxes end when the client disconnects or the server is killed.
import fs from "node:fs";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { describeAllowance, describeVolumes } from "./guards/volumes.js";
import type { McpLimits } from "./limits.js";
import { SandboxRegistry } from "./sandboxes.js";
import { shareOnlyCanonicalPaths } from "../vm/vm.js";
import { registerExecTools } from "./tools/exec.js";
import { registerFileTools } from "./tools/files.js";
import { registerLifecycleTools } from "./tools/lifecycle.js";

const { version } = JSON.parse(fs.readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };

function networkLimit(limits: McpLimits): string {
  const within = `, to destinations within ${limits.allowHosts.map((r) => r.text).join(", ")}`;
  if (limits.network === "none") return "no network (network must be \"none\")";
  return `${limits.network === "public" ? '"public" or allow-list policies' : "allow-list policies only"}${within}`;
}

/** Tells the model up front what the operator allows. */
function instructions(limits: McpLimits): string {
  const binds = limits.allowBind.length ? `only inside ${limits.allowBind.map(describeAllowance).join(", ")}` : "none (use named or tmpfs volumes)";
  const idle = limits.idleTimeoutMs ? `sandboxes unused for ${limits.idleTimeoutMs / 1000} s are stopped` : "idle sandboxes are not stopped";
  return (
    "krunbox runs code in sandboxes: hardware-isolated microVMs, with no network unless sandbox_create asks for one within " +
    "the limits below. Create one with " +
    "sandbox_create, run commands with sandbox_exec, move files with sandbox_write_file, sandbox_read_file and " +
    "sandbox_list_files, stop it with sandbox_stop; sandbox_run_code runs a snippet, in a throwaway sandbox if no id is given. " +
    `Limits set by whoever started this server: at most ${limits.maxSandboxes} sandbox(es) and ${limits.maxMemoryMiB} MiB of ` +
    `memory together, ${limits.maxCpus} cpus each; network: ${networkLimit(limits)}; published ports: ` +
    `${limits.allowPublish ? "on the host's loopback, on free ports" : "none"}; host folders that may be bound: ${binds}; ` +
    `named volumes: ${describeVolumes(limits.allowVolumes)}; image registries: ${limits.allowRegistries.join(", ")}; ${idle}; ` +
    `output kept per stream: ${limits.maxOutputBytes} bytes; files read or written per call: ${limits.maxFileBytes} bytes.`
  );
}

/**
 * Serves MCP on stdin/stdout until the client disconnects (stdin ends) or
 * a signal asks to stop; then stops every sandbox and resolves. Logs go
 * to stderr: stdout carries the protocol.
 */
export async function serveMcp(limits: McpLimits): Promise<void> {
  const log = (line: string) => process.stderr.write(`krunbox mcp: ${line}\n`);
  // The --allow-bind check resolved each bind's real path: a link swapped in after it is refused, not followed.
  shareOnlyCanonicalPaths();
  const sandboxes = new SandboxRegistry(limits, log);
  const server = new McpServer({ name: "krunbox", version }, { instructions: instructions(limits) });
  registerLifecycleTools(server, sandboxes, limits);
  registerExecTools(server, sandboxes, limits);
  registerFileTools(server, sandboxes, limits);

  let finish!: () => void;
  const finished = new Promise<void>((resolve) => (finish = resolve));
  let stopping = false;
  const shutdown = async (why: string) => {
    if (stopping) return;
    stopping = true;
    const n = sandboxes.list().length;
    if (n) log(`${why}: stopping ${n} sandbox(es)`);
    await sandboxes.close();
    await server.close().catch(() => {});
    process.stdin.destroy();
    finish();
  };
  const onSignal = (signal: NodeJS.Signals) => void shutdown(`got ${signal}`);
  const signals = ["SIGTERM", "SIGINT", "SIGHUP"] as const;
  for (const s of signals) process.on(s, onSignal);
  process.stdin.once("end", () => void shutdown("the client disconnected"));
  process.stdout.once("error", () => void shutdown("the client stopped reading"));

  await server.connect(new StdioServerTransport());
  await finished;
  for (const s of signals) process.off(s, onSignal);
}
