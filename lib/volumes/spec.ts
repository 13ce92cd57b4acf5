// What a sandbox's `volumes` entries may say (zod, strict: a misspelt key
// such as `readonly` is an error, never a silently read-write mount), and
// how they become the VM's shares and tmpfs mounts.
import fs from "node:fs";
import path from "node:path";
import { z } from "zod";
import { ConfigError } from "../errors.js";
import { VM_DEFAULTS } from "../vm/defaults.js";
import { guestMountPath } from "../vm/options.js";
import { isVolumeName, Volume, VOLUME_NAME_RULE } from "./volumes.js";

const volumeName = z.string().refine(isVolumeName, { message: VOLUME_NAME_RULE });

// A fresh schema per field that checks with guestMountPath: JSON Schema
// generators (MCP tool schemas) turn a shared instance into a $ref.
const target = () =>
  z
    .string()
    .describe("absolute path in the guest")
    .superRefine((p, ctx) => guestMountPath.safeParse(p).error?.issues.forEach((issue) => ctx.addIssue(issue)));

const volumeObjectSchema = z.discriminatedUnion("type", [
  z
    .object({
      type: z.literal("bind"),
      /** Host folder, or a regular file (bound onto a file); a relative one resolves against process.cwd(). */
      source: z.string().min(1, "must name a host folder or file"),
      /** Where the guest sees it (absolute; not /, /proc, /sys, /dev). */
      target: target(),
      /** Enforced on the host: the guest cannot write, whatever it does. Default: false. */
      readOnly: z.boolean().default(false),
    })
    .strict(),
  z
    .object({
      type: z.literal("named"),
      /** Created on first use. */
      name: volumeName,
      /** Where the guest sees it (absolute; not /, /proc, /sys, /dev). */
      target: target(),
      /** Enforced on the host. Default: false. */
      readOnly: z.boolean().default(false),
    })
    .strict(),
  z
    .object({
      type: z.literal("tmpfs"),
      /** Where the guest sees it (absolute; not /, /proc, /sys, /dev). */
      target: target(),
      /** Its size limit in MiB (ENOSPC past it). Default: 64. */
      sizeMiB: z
        .number()
        .int("must be a positive whole number of MiB")
        .min(1, "must be a positive whole number of MiB")
        .max(1 << 20)
        .default(VM_DEFAULTS.tmpfsSizeMiB),
    })
    .strict(),
]);

/** Docker style: "./src:/src", "/abs:/dst:ro", "name:/data" (no "/" or "." first: a named volume). */
function fromDockerStyle(spec: unknown, ctx: z.RefinementCtx): unknown {
  if (typeof spec !== "string") return spec;
  const parts = spec.split(":");
  if (parts.length < 2 || parts.length > 3 || (parts[2] !== undefined && !["ro", "rw"].includes(parts[2]))) {
    ctx.addIssue({ code: "custom", message: `expected "SOURCE:TARGET" or "SOURCE:TARGET:ro" (got ${JSON.stringify(spec)})` });
    return z.NEVER;
  }
  const [source, target, mode] = parts;
  const readOnly = mode === "ro";
  // As in Docker: a source that is not a path names a volume.
  if (source.startsWith("/") || source.startsWith(".")) return { type: "bind", source, target, readOnly };
  return { type: "named", name: source, target, readOnly };
}

/** One entry as a caller writes it: a Docker-style string or an object. */
export const volumeSpecSchema = z.union([
  z.string().describe('Docker style: "./src:/src", "/abs:/dst:ro", "name:/data" (a source without "/" or "." first names a named volume)'),
  ...volumeObjectSchema.options,
]);

export const volumesSchema = z
  .array(z.preprocess(fromDockerStyle, volumeObjectSchema))
  .max(64)
  .superRefine((volumes, ctx) => {
    const targets = new Set<string>();
    volumes.forEach((v, i) => {
      if (targets.has(v.target)) ctx.addIssue({ code: "custom", path: [i, "target"], message: `"${v.target}" is mounted twice` });
      targets.add(v.target);
    });
  });

export type VolumeSpec = z.input<typeof volumeObjectSchema> | string;
export type VolumeEntry = z.output<typeof volumeObjectSchema>;

export interface ResolvedVolumes {
  shares: { hostPath: string; guestPath: string; readOnly: boolean }[];
  tmpfs: { guestPath: string; sizeMiB: number }[];
  named: string[];
}

/**
 * Each bind's host path, resolved against process.cwd() and checked: a
 * folder, or a regular file (bound onto a file in the guest). ConfigError
 * names the entry; creates nothing.
 */
export function bindSources(volumes: VolumeEntry[]): (string | undefined)[] {
  return volumes.map((v, i) => {
    if (v.type !== "bind") return undefined;
    const field = `volumes[${i}].source`;
    const source = path.resolve(v.source);
    const st = fs.statSync(source, { throwIfNoEntry: false });
    if (!st) throw new ConfigError(field, `${field}: ${source} does not exist on the host; create it first`);
    if (!st.isDirectory() && !st.isFile())
      throw new ConfigError(field, `${field}: ${source} is neither a folder nor a regular file; only those can be bound`);
    return source;
  });
}

/**
 * Checks every bind source first, so that bad input creates nothing; then
 * creates missing named volumes.
 */
export async function resolveVolumes(volumes: VolumeEntry[]): Promise<ResolvedVolumes> {
  const sources = bindSources(volumes);
  const out: ResolvedVolumes = { shares: [], tmpfs: [], named: [] };
  for (const [i, v] of volumes.entries()) {
    if (v.type === "tmpfs") out.tmpfs.push({ guestPath: v.target, sizeMiB: v.sizeMiB });
    else if (v.type === "bind") out.shares.push({ hostPath: sources[i]!, guestPath: v.target, readOnly: v.readOnly });
    else {
      const vol = await Volume.ensure(v.name);
      await vol.ready();
      out.named.push(vol.name);
      out.shares.push({ hostPath: vol.info.path, guestPath: v.target, readOnly: v.readOnly });
    }
  }
  return out;
}
