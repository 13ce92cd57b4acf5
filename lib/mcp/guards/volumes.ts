// Which volumes a model may mount: host folders only inside --allow-bind,
// named volumes only those --allow-volume names (by default its own
// "mcp-" ones, never the other volumes in KRUNBOX_HOME), tmpfs freely.
import fs from "node:fs";
import path from "node:path";
import { ConfigError, LimitError, QuotaNotSupportedError, VolumeExistsError, VolumeNotFoundError } from "../../errors.js";
import { parseOptions } from "../../validate.js";
import { volumesSchema, type VolumeEntry, type VolumeSpec } from "../../volumes/spec.js";
import { Volume } from "../../volumes/volumes.js";
import { SET_BY_OPERATOR, type BindAllowance, type McpLimits } from "../limits.js";

export const describeAllowance = (a: BindAllowance) => (a.readOnly ? `${a.dir} (read-only)` : a.dir);

/** What --allow-volume allows, in words. */
export const describeVolumes = (patterns: string[]) => (patterns.length ? patterns.join(", ") : "none");

function isInside(dir: string, p: string): boolean {
  const rel = path.relative(dir, p);
  return rel === "" || (!rel.startsWith("..") && !path.isAbsolute(rel));
}

/** A volume name against --allow-volume patterns: a name, a prefix ending in "*", or "*". */
const volumeAllowed = (name: string, patterns: string[]) =>
  patterns.some((p) => (p.endsWith("*") ? name.startsWith(p.slice(0, -1)) : name === p));

function confineBind(spec: Extract<VolumeEntry, { type: "bind" }>, field: string, limits: McpLimits): VolumeEntry {
  const asked = path.resolve(spec.source);
  if (!limits.allowBind.length)
    throw new LimitError(
      "--allow-bind",
      `refused: ${field} binds the host folder ${asked}, but this server may share no host folders (no --allow-bind, ${SET_BY_OPERATOR}); ` +
        `use a named or tmpfs volume`,
    );
  let real: string;
  try {
    real = fs.realpathSync(asked);
  } catch {
    throw new ConfigError(`${field}.source`, `${field}.source: host folder ${asked} does not exist`);
  }
  const within = limits.allowBind.filter((a) => isInside(a.dir, real));
  if (!within.length)
    throw new LimitError(
      "--allow-bind",
      `refused: ${field} binds ${asked}${real === asked ? "" : ` (which leads to ${real})`}, outside the folders this server ` +
        `may share: ${limits.allowBind.map(describeAllowance).join(", ")} (--allow-bind, ${SET_BY_OPERATOR})`,
    );
  if (!spec.readOnly && within.every((a) => a.readOnly))
    throw new LimitError(
      "--allow-bind",
      `refused: ${field} binds ${asked} read-write, but this server shares ${within.map((a) => a.dir).join(", ")} only read-only ` +
        `(--allow-bind DIR:ro, ${SET_BY_OPERATOR}); bind it with ":ro" or readOnly: true`,
    );
  return { ...spec, source: real };
}

/**
 * Checks every volume against the server's limits and returns them with
 * each bind's source replaced by its real path (what was checked is what
 * gets shared; symlinks are resolved first, relative sources against the
 * server's working folder).
 */
export function confineVolumes(volumes: VolumeSpec[], limits: McpLimits): VolumeEntry[] {
  return parseOptions(volumesSchema, volumes, "volumes").map((spec, i) => {
    const field = `volumes[${i}]`;
    if (spec.type === "bind") return confineBind(spec, field, limits);
    if (spec.type === "named" && !volumeAllowed(spec.name, limits.allowVolumes))
      throw new LimitError(
        "--allow-volume",
        `refused: ${field} mounts the named volume "${spec.name}", but this server lets sandboxes use ` +
          `${limits.allowVolumes.length ? `only the named volumes ${describeVolumes(limits.allowVolumes)}` : "no named volumes"} ` +
          `(--allow-volume, ${SET_BY_OPERATOR}); use a tmpfs volume${limits.allowVolumes.length ? ", or a name that fits" : ""}`,
      );
    return spec;
  });
}

/**
 * Creates the named volumes a tool call mounts that do not exist yet, each
 * with the --volume-quota quota (so a model cannot fill the host's disk);
 * volumes that exist are used as they are. With --volume-quota none,
 * Sandbox.create makes them, unbounded.
 */
export async function createQuotaVolumes(volumes: VolumeEntry[], limits: McpLimits): Promise<void> {
  const quotaMiB = limits.volumeQuotaMiB;
  if (quotaMiB === null) return;
  for (const v of volumes) {
    if (v.type !== "named") continue;
    try {
      await Volume.get(v.name);
      continue;
    } catch (err) {
      if (!(err instanceof VolumeNotFoundError)) throw err;
    }
    try {
      await Volume.create(v.name, { quotaMiB, labels: { "created-by": "krunbox mcp" } });
    } catch (err) {
      if (err instanceof VolumeExistsError) continue;
      if (err instanceof QuotaNotSupportedError)
        throw new LimitError(
          "--volume-quota",
          `refused: the named volume "${v.name}" would be created with a ${quotaMiB} MiB quota, which this host cannot enforce ` +
            `(${err.message}); --volume-quota none lets tool calls create volumes without one (${SET_BY_OPERATOR}); use a tmpfs volume`,
        );
      throw err;
    }
  }
}
