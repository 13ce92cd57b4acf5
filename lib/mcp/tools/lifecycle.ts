// sandbox_create, sandbox_stop, sandbox_list.
import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { z } from "zod";
import { imageReferenceSchema, sandboxOptionsSchema } from "../../sandbox/options.js";
import { volumeSpecSchema } from "../../volumes/spec.js";
import { confineNetwork, confinePorts, modelNetworkSchema, modelPortsSchema } from "../guards/network.js";
import { registryCheck } from "../guards/registry.js";
import { confineVolumes, createQuotaVolumes } from "../guards/volumes.js";
import type { McpLimits } from "../limits.js";
import { toolResult } from "../output.js";
import { pullProgress } from "../progress.js";
import { sandboxIdSchema, sandboxSummarySchema, type SandboxRegistry } from "../sandboxes.js";

// What a model may choose; the rest of the API's options (backend, image
// folders, credentials, onConnect) stay with whoever runs the server.
export const createInputSchema = sandboxOptionsSchema.pick({ cpus: true, memoryMiB: true, env: true }).extend({
  image: imageReferenceSchema.optional().describe("an OCI image reference; omit for the default busybox image"),
  volumes: z
    .array(volumeSpecSchema)
    .optional()
    .describe("bind (host folders the server allows), named (kept by krunbox across sandboxes) and tmpfs volumes"),
  network: modelNetworkSchema.optional(),
  ports: modelPortsSchema.optional(),
});

function networkWords(limits: McpLimits): string {
  if (limits.network === "none") return "no network";
  const mode = limits.network === "public" ? '"public" or an allow-list policy' : "an allow-list policy";
  return `no network unless you ask for one (${mode}, within: ${limits.allowHosts.map((r) => r.text).join(", ")})`;
}

export function registerLifecycleTools(server: McpServer, sandboxes: SandboxRegistry, limits: McpLimits): void {
  server.registerTool(
    "sandbox_create",
    {
      description:
        `Boots a sandbox: a hardware-isolated microVM with ${networkWords(limits)}. Returns its id for sandbox_exec and the ` +
        `other tools${limits.allowPublish ? ", and the host ports its published guest ports listen on" : ""}. Stop it with sandbox_stop when done.`,
      inputSchema: createInputSchema,
      outputSchema: z.object({ id: sandboxIdSchema, ports: sandboxSummarySchema.shape.ports }),
    },
    async ({ image, cpus, memoryMiB, env, volumes, network, ports }, extra) => {
      const options = {
        image,
        cpus,
        memoryMiB,
        env,
        volumes: confineVolumes(volumes ?? [], limits),
        network: confineNetwork(network, limits),
        ports: confinePorts(ports, limits),
      };
      const checkConnection = image ? await registryCheck(image, limits) : undefined;
      await createQuotaVolumes(options.volumes, limits);
      const created = await sandboxes.create(options, { onPull: pullProgress(image, extra), checkConnection });
      return toolResult({ id: created.id, ports: created.ports });
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
      await sandboxes.stop(id);
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
    async () => toolResult({ sandboxes: sandboxes.list() }),
  );
}
