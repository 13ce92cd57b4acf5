// sandbox_exec and sandbox_run_code: processes with bounded output.
import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { finished } from "node:stream/promises";
import { z } from "zod";
import { execOptionsSchema, sandboxOptionsSchema, type SpawnOptions } from "../../sandbox/options.js";
import type { Sandbox } from "../../sandbox/sandbox.js";
import type { McpLimits } from "../limits.js";
import { BoundedOutput, toolResult } from "../output.js";
import { pullProgress } from "../progress.js";
import { sandboxIdSchema, type SandboxRegistry } from "../sandboxes.js";

// A tool call should end: clients give up on requests after about a minute.
const DEFAULT_TIMEOUT_MS = 60_000;
// The guest kernel's limit for one argument (MAX_ARG_STRLEN), NUL included.
const MAX_CODE_BYTES = (128 << 10) - 1;

const timeoutMs = execOptionsSchema.shape.timeoutMs
  .default(DEFAULT_TIMEOUT_MS)
  .describe("the process group is killed after this many milliseconds");

export const execInputSchema = execOptionsSchema.pick({ cwd: true, env: true }).extend({
  id: sandboxIdSchema,
  command: z.string().min(1).describe("the program, found on the image's PATH"),
  args: z.array(z.string()).default([]),
  stdin: z.string().optional().describe("text for the process's standard input"),
  timeoutMs,
});

const LANGUAGES = {
  python: ["python3", "-c"],
  node: ["node", "-e"],
  sh: ["sh", "-c"],
} as const;

export const runCodeInputSchema = z
  .object({
    id: sandboxIdSchema.optional().describe("run in this sandbox; omit to run in a throwaway sandbox on the language's image"),
    language: z.enum(["python", "node", "sh"]),
    code: z.string().refine((code) => Buffer.byteLength(code) <= MAX_CODE_BYTES, `code: at most ${MAX_CODE_BYTES} bytes of UTF-8`),
    timeoutMs,
  })
  .strict();

const execResultSchema = z.object({
  exitCode: z.number().int().nullable().describe("null when a signal ended the process"),
  signal: z.string().nullable().describe('the signal that ended the process ("SIGKILL"), or null'),
  timedOut: z.boolean(),
  stdout: z.string(),
  stderr: z.string(),
  note: z.string().optional().describe("what was cut from the output, or why the process ended"),
});

async function runBounded(sandbox: Sandbox, argv: readonly string[], options: SpawnOptions, limits: McpLimits) {
  const proc = sandbox.spawn(argv[0], argv.slice(1), options);
  const out = new BoundedOutput(limits.maxOutputBytes);
  const err = new BoundedOutput(limits.maxOutputBytes);
  proc.stdout.on("data", (chunk: Buffer) => out.push(chunk));
  proc.stderr.on("data", (chunk: Buffer) => err.push(chunk));
  const exit = await proc.exited;
  await Promise.all([finished(proc.stdout), finished(proc.stderr)]);
  const stdout = out.result();
  const stderr = err.result();
  const notes: string[] = [];
  for (const [name, o] of [["stdout", stdout], ["stderr", stderr]] as const)
    if (o.omitted)
      notes.push(`${name} was ${o.total} bytes: ${o.omitted} in the middle were left out (the server keeps ${limits.maxOutputBytes} per stream, --max-output)`);
  if (exit.timedOut) notes.push(`the process ran past timeoutMs (${options.timeoutMs} ms) and was killed`);
  return toolResult({ ...exit, stdout: stdout.text, stderr: stderr.text, ...(notes.length ? { note: notes.join("; ") } : {}) });
}

export function registerExecTools(server: McpServer, sandboxes: SandboxRegistry, limits: McpLimits): void {
  server.registerTool(
    "sandbox_exec",
    {
      description:
        "Runs a program in a sandbox and returns its exit code, stdout and stderr (long output keeps its start and end). " +
        "A non-zero exit is a result, not an error.",
      inputSchema: execInputSchema,
      outputSchema: execResultSchema,
    },
    async ({ id, command, args, stdin, cwd, env, timeoutMs }, extra) =>
      sandboxes.use(id, (sb) => runBounded(sb, [command, ...args], { input: stdin, cwd, env, timeoutMs, signal: extra.signal }, limits)),
  );

  server.registerTool(
    "sandbox_run_code",
    {
      description:
        "Runs a snippet of python (python3 -c), node (node -e) or sh (sh -c) code. With an id it runs in that sandbox; " +
        `without, in a throwaway sandbox on ${limits.images.python} for python, ${limits.images.node} for node and the ` +
        "default busybox image for sh, stopped afterwards.",
      inputSchema: runCodeInputSchema,
      outputSchema: execResultSchema,
    },
    async ({ id, language, code, timeoutMs }, extra) => {
      const run = (sb: Sandbox) => runBounded(sb, [...LANGUAGES[language], code], { timeoutMs, signal: extra.signal }, limits);
      if (id) return sandboxes.use(id, run);
      const image = language === "sh" ? undefined : limits.images[language];
      const { cpus, memoryMiB } = sandboxOptionsSchema.pick({ cpus: true, memoryMiB: true }).parse({});
      return sandboxes.once({ image, cpus, memoryMiB }, pullProgress(image, extra), run);
    },
  );
}
