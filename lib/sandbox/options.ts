// Validation of every user option (zod), with errors that name the field.
import path from "node:path";
import { z } from "zod";
import { ConfigError } from "../errors.js";
import { VM_DEFAULTS } from "../vm/defaults.js";
import type { VolumeSpec } from "../volumes/volumes.js";

const absolutePath = z.string().refine((p) => path.isAbsolute(p) && path.normalize(p) === p, {
  message: "must be an absolute, normalized path such as /work",
});
// Whether the user exists is the guest's to say (its /etc/passwd).
const userSpec = z.string().regex(/^[A-Za-z0-9._-]+(:\d+)?$/, "must be a user name or uid, optionally :gid");
const envRecord = z.record(
  z.string().regex(/^[^=\0]+$/, "names must be non-empty and contain no '=' or NUL"),
  z.string().refine((v) => !v.includes("\0"), "values must not contain NUL"),
);

export const sandboxOptionsSchema = z
  .object({
    cpus: z.number().int().min(1).max(64).default(VM_DEFAULTS.cpus),
    memoryMiB: z.number().int().min(64).max(1024 * 1024).default(VM_DEFAULTS.memoryMiB),
    env: envRecord.default({}),
    workdir: absolutePath.default(VM_DEFAULTS.workdir),
    /** The user processes run as unless an exec says otherwise (default: the image's User, else root). */
    user: userSpec.optional(),
    backend: z.enum(["auto", "qemu", "libkrun"]).default("auto"),
    accel: z.enum(["auto", "kvm", "tcg"]).default("auto"),
    bootTimeoutMs: z.number().int().min(1000).max(3_600_000).default(VM_DEFAULTS.bootTimeoutMs),
    libkrunPath: z.string().optional(),
    /** The root: omitted for the default image, or a local root folder. */
    image: z
      .union([
        z.string().min(1),
        z.object({ dir: z.string().min(1) }).strict(),
        z
          .object({
            ref: z.string().min(1),
            pullPolicy: z.enum(["if-missing", "always", "never"]).optional(),
            credentials: z.object({ username: z.string(), password: z.string() }).strict().optional(),
            insecure: z.boolean().optional(),
          })
          .strict(),
      ])
      .optional(),
    /** Checked entry by entry by checkVolumes (lib/volumes/volumes.ts). */
    volumes: z.array(z.any()).max(64).default([]),
  })
  .strict();
export type SandboxOptions = Omit<z.input<typeof sandboxOptionsSchema>, "volumes"> & { volumes?: VolumeSpec[] };
export type ResolvedSandboxOptions = z.output<typeof sandboxOptionsSchema> & {
  /** The root folder the image resolved to (undefined: the default image). */
  root?: string;
  imageDigest?: string;
};

export const execOptionsSchema = z
  .object({
    env: envRecord.default({}),
    cwd: absolutePath.optional(),
    user: userSpec.optional(),
    stdin: z.union([z.string(), z.instanceof(Buffer), z.instanceof(Uint8Array), z.literal("pipe"), z.literal("ignore")]).optional(),
    timeoutMs: z.number().int().min(1).max(2 ** 31 - 1).optional(),
    signal: z.instanceof(AbortSignal).optional(),
    encoding: z.enum(["utf8", "buffer"]).default("utf8"),
    maxBufferBytes: z.number().int().min(1).default(64 << 20),
  })
  .strict();
export type ExecOptions = z.input<typeof execOptionsSchema>;
export type ParsedExecOptions = z.output<typeof execOptionsSchema>;

/** Parses with `schema`; throws ConfigError naming the first bad field. */
export function parseOptions<S extends z.ZodTypeAny>(schema: S, value: unknown, prefix: string): z.output<S> {
  const result = schema.safeParse(value ?? {});
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const field = [prefix, ...issue.path.map(String)].filter(Boolean).join(".");
  throw new ConfigError(field || prefix, `${field || prefix}: ${issue.message}`);
}

export function checkArgv(command: unknown, args: unknown): string[] {
  if (typeof command !== "string" || command === "" || command.includes("\0"))
    throw new ConfigError("command", "command: must be a non-empty string naming the program to run");
  if (!Array.isArray(args) || args.some((a) => typeof a !== "string" || a.includes("\0")))
    throw new ConfigError("args", "args: must be an array of strings without NUL characters");
  return [command, ...(args as string[])];
}
