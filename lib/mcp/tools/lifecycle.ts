// sandbox_create, sandbox_stop, sandbox_list.
import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { z } from "zod";
import { imageReferenceSchema, sandboxOptionsSchema } from "../../sandbox/options.js";
import { volumeSpecSchema } from "../../volumes/spec.js";
import { confineBinds, type McpLimits } from "../limits.js";
import { toolResult } from "../output.js";
import { pullProgress } from "../progress.js";
import { sandboxIdSchema, sandboxSummarySchema, type SandboxPool } from "../sandboxes.js";

// What a model may choose; the rest of the API's options (backend, image
// folders, credentials) stay with whoever runs the server.
export const createInputSchema = sandboxOptionsSchema.pick({ cpus: true, memoryMiB: true, env: true }).extend({
  image: imageReferenceSchema.optional().describe("an OCI image reference; omit for the default busybox image"),
  volumes: z
    .array(volumeSpecSchema)
    .optional()
    .describe("bind (host folders the server allows), named (kept by krunbox across sandboxes) and tmpfs volumes"),
});

export function registerLifecycleTools(server: McpServer, pool: SandboxPool, limits: McpLimits): void {
  server.registerTool(
    "sandbox_create",
    {
      description:
        "Boots a sandbox: a hardware-isolated microVM with no network. Returns its id for sandbox_exec and the other tools. " +
        "Stop it with sandbox_stop when done.",
      inputSchema: createInputSchema,
      outputSchema: z.object({ id: sandboxIdSchema }),
    },
    async ({ image, cpus, memoryMiB, env, volumes }, extra) => {
      const id = await pool.create({ image, cpus, memoryMiB, env, volumes: confineBinds(volumes ?? [], limits) }, pullProgress(image, extra));
      return toolResult({ id });
    },
  );

  server.registerTool(
    "sandbox_stop",
    {
      description: "Stops a sandbox: its processes end and its changes to the image are gone (volumes keep theirs).",
      inputSchema: z.object({ id: sandboxIdSchema }).strict(),
      outputSchema: z.object({ stopped: sandboxIdSchema }),
      annotations: { destructiveHint: true, idempotentHint: false },
    },
    async ({ id }) => {
      await pool.stop(id);
      return toolResult({ stopped: id });
    },
  );

  server.registerTool(
    "sandbox_list",
    {
      description: "Lists this server's running sandboxes.",
      outputSchema: z.object({ sandboxes: z.array(sandboxSummarySchema) }),
      annotations: { readOnlyHint: true },
    },
    async () => toolResult({ sandboxes: pool.list() }),
  );
}
