// sandbox_read_file, sandbox_write_file, sandbox_list_files: sb.fs, with
// what one call may carry bounded by the server's flags.
import path from "node:path";
import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { z } from "zod";
import { ConfigError, FsError, FsLimitError, LimitError } from "../../errors.js";
import type { Dirent } from "../../fs/types.js";
import type { Sandbox } from "../../sandbox/sandbox.js";
import { SET_BY_OPERATOR, type McpLimits } from "../limits.js";
import { toolResult } from "../output.js";
import { sandboxIdSchema, type SandboxRegistry } from "../sandboxes.js";

const pathSchema = z.string().min(1).describe("a path in the sandbox; a relative one is against its working folder");
const encodingSchema = z.enum(["utf8", "base64"]).default("utf8").describe('"utf8" for text, "base64" for bytes');

// What a model can do about an error it gets, beyond Node's own words.
const HINTS: Record<string, string> = {
  ENOENT: "no such file or folder (sandbox_list_files shows what there is)",
  EISDIR: "a folder, not a file (list it with sandbox_list_files)",
  ENOTDIR: "a part of the path is not a folder",
  EACCES: "permission denied to the sandbox's user",
  EROFS: "read-only file system (a read-only volume)",
  ENOSPC: "no space left on the file system",
};

/** Runs a file operation; an FsError becomes a message that says what happened and what to do. */
async function fileOp<T>(op: () => Promise<T>): Promise<T> {
  try {
    return await op();
  } catch (err) {
    if (err instanceof FsError && HINTS[err.code]) throw new FsError(err.code, err.errno, err.syscall, err.path, { description: HINTS[err.code] });
    throw err;
  }
}

const tooLarge = (what: string, limits: McpLimits, todo: string) =>
  new LimitError(
    "--max-file-bytes",
    `refused: ${what}, more than the ${limits.maxFileBytes} bytes one call may carry (--max-file-bytes, ${SET_BY_OPERATOR}); ${todo}`,
  );

const utf8 = new TextDecoder("utf-8", { fatal: true });

async function readFile(sb: Sandbox, p: string, encoding: "utf8" | "base64", limits: McpLimits) {
  let data: Buffer;
  try {
    data = await fileOp(() => sb.fs.readFile(p, { maxBytes: limits.maxFileBytes }));
  } catch (err) {
    if (!(err instanceof FsLimitError)) throw err;
    const size = await sb.fs.stat(p).then((s) => `${s.size} bytes`, () => "more bytes");
    throw tooLarge(`${p} holds ${size}`, limits, "read a part of it with sandbox_exec (head -c, tail -c, sed -n)");
  }
  let content: string;
  if (encoding === "base64") content = data.toString("base64");
  else
    try {
      content = utf8.decode(data);
    } catch {
      throw new ConfigError("encoding", `encoding: ${p} is not UTF-8 text (${data.length} bytes); read it with encoding "base64"`);
    }
  return toolResult({ path: p, encoding, bytes: data.length, content });
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

async function writeFile(sb: Sandbox, p: string, content: string, encoding: "utf8" | "base64", limits: McpLimits) {
  const compact = encoding === "base64" ? content.replace(/\s+/g, "") : content;
  if (encoding === "base64" && !BASE64.test(compact))
    throw new ConfigError("content", 'content: not valid base64 (A-Z, a-z, 0-9, "+", "/", padded with "=")');
  const data = Buffer.from(compact, encoding);
  if (data.length > limits.maxFileBytes)
    throw tooLarge(`content is ${data.length} bytes`, limits, "write it in parts (sandbox_exec with cat >>), or share a folder the server allows");
  await fileOp(async () => {
    await sb.fs.mkdir(path.posix.dirname(p), { recursive: true });
    await sb.fs.writeFile(p, data);
  });
  return toolResult({ path: p, bytes: data.length });
}

const entryType = (e: Dirent) => (e.isDirectory() ? "directory" : e.isFile() ? "file" : e.isSymbolicLink() ? "symlink" : "other");

async function listFiles(sb: Sandbox, p: string, limits: McpLimits) {
  const all = await fileOp(() => sb.fs.readdir(p, { withFileTypes: true }));
  all.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const entries = all.slice(0, limits.maxListEntries).map((e) => ({ name: e.name, type: entryType(e) }));
  const note =
    all.length > entries.length
      ? `${all.length} entries: only the first ${entries.length} by name are listed (--max-list-entries, ${SET_BY_OPERATOR}); ` +
        "use sandbox_exec (ls, find) to see the rest"
      : undefined;
  return toolResult({ path: p, total: all.length, entries, ...(note ? { note } : {}) });
}

export function registerFileTools(server: McpServer, sandboxes: SandboxRegistry, limits: McpLimits): void {
  server.registerTool(
    "sandbox_read_file",
    {
      description:
        `Reads a file in a sandbox, as text (UTF-8) or as base64 for bytes; at most ${limits.maxFileBytes} bytes ` +
        "(read parts of bigger files with sandbox_exec).",
      inputSchema: z.object({ id: sandboxIdSchema, path: pathSchema, encoding: encodingSchema }).strict(),
      outputSchema: z.object({ path: z.string(), encoding: z.enum(["utf8", "base64"]), bytes: z.number().int(), content: z.string() }),
      annotations: { readOnlyHint: true },
    },
    async ({ id, path: p, encoding }) => sandboxes.use(id, (sb) => readFile(sb, p, encoding, limits)),
  );

  server.registerTool(
    "sandbox_write_file",
    {
      description:
        "Writes a file in a sandbox (replacing it; missing parent folders are created), from text or, with " +
        `encoding "base64", bytes; at most ${limits.maxFileBytes} bytes.`,
      inputSchema: z.object({ id: sandboxIdSchema, path: pathSchema, content: z.string(), encoding: encodingSchema }).strict(),
      outputSchema: z.object({ path: z.string(), bytes: z.number().int() }),
      annotations: { destructiveHint: true, idempotentHint: true },
    },
    async ({ id, path: p, content, encoding }) => sandboxes.use(id, (sb) => writeFile(sb, p, content, encoding, limits)),
  );

  server.registerTool(
    "sandbox_list_files",
    {
      description: `Lists a folder in a sandbox: names and types (file, directory, symlink, other), sorted, at most ${limits.maxListEntries}.`,
      inputSchema: z.object({ id: sandboxIdSchema, path: pathSchema.default("/") }).strict(),
      outputSchema: z.object({
        path: z.string(),
        total: z.number().int().describe("entries in the folder"),
        entries: z.array(z.object({ name: z.string(), type: z.enum(["file", "directory", "symlink", "other"]) })),
        note: z.string().optional().describe("present when entries were left out"),
      }),
      annotations: { readOnlyHint: true },
    },
    async ({ id, path: p }) => sandboxes.use(id, (sb) => listFiles(sb, p, limits)),
  );
}
