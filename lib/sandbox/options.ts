// Validation of every user option (zod, strict), with errors that name the field.
import { z } from "zod";
import { ConfigError } from "../errors.js";
import { VM_DEFAULTS } from "../vm/defaults.js";
import { imagePullFields } from "../images/cache.js";
import { diskImageSchema, type RootDisk } from "../images/disk.js";
import { absolutePath } from "../vm/options.js";
import { volumesSchema, type VolumeSpec } from "../volumes/spec.js";
import { networkSchema, type NetworkOption } from "../network/policy.js";
import type { VmNetwork } from "../vm/options.js";
import { portsSchema, type PortSpec } from "../network/ports.js";
export const envRecord = z.record(
  z.string().regex(/^[^=\0]+$/, "names must be non-empty and contain no '=' or NUL"),
  z.string().refine((v) => !v.includes("\0"), "values must not contain NUL"),
);

/** An OCI image reference, checked in full by parseReference (lib/images/reference.ts). */
export const imageReferenceSchema = z.string().min(1).describe('an OCI image reference, e.g. "python:3-slim" or "localhost:5000/team/app:1"');

// The highest uid/gid: (uid_t)-1 means "leave unchanged" to setuid() and friends.
export const MAX_ID = 2 ** 32 - 2;
const validId = (id: string) => !/^\d+$/.test(id) || Number(id) <= MAX_ID;
const userSchema = z
  .string()
  .regex(/^[A-Za-z0-9._][A-Za-z0-9._-]*(:\d+)?$/, "must be a user name or uid, optionally :gid")
  .refine((u) => u.split(":").every(validId), { message: `uids and gids go from 0 to ${MAX_ID}` });

export const sandboxOptionsSchema = z
  .object({
    cpus: z.number().int().min(1).max(64).default(VM_DEFAULTS.cpus),
    memoryMiB: z.number().int().min(64).max(1024 * 1024).default(VM_DEFAULTS.memoryMiB),
    env: envRecord.default({}),
    workdir: absolutePath.default(VM_DEFAULTS.workdir),
    /** Who processes and sb.fs run as by default (the image's user if absent). */
    user: userSchema.optional(),
    backend: z.enum(["auto", "qemu", "libkrun"]).default("auto"),
    accel: z.enum(["auto", "kvm", "tcg"]).default("auto"),
    bootTimeoutMs: z.number().int().min(1000).max(3_600_000).default(VM_DEFAULTS.bootTimeoutMs),
    libkrunPath: z.string().optional(),
    /** The root: omitted for the default image, an OCI image, a local root folder or a disk image. */
    image: z
      .union([
        imageReferenceSchema,
        z.object({ dir: z.string().min(1) }).strict(),
        z.object({ ref: z.string().min(1), ...imagePullFields }).strict(),
        diskImageSchema,
      ])
      .optional(),
    volumes: volumesSchema.default([]),
    /** Checked entry by entry by resolveNetwork (lib/network/policy.ts). */
    network: networkSchema.default("none"),
    /** Checked entry by entry by resolvePorts (lib/network/ports.ts). */
    ports: portsSchema.default([]),
  })
  .strict();
export type SandboxOptions = Omit<z.input<typeof sandboxOptionsSchema>, "volumes" | "network" | "ports"> & {
  volumes?: VolumeSpec[];
  /** "none" (the default: no network device), "public", or a policy. */
  network?: NetworkOption;
  /** Published ports: "8080:80", "127.0.0.1:8080:80", or { guest, host?, hostIp? }. */
  ports?: (string | number | PortSpec)[];
};
export type ResolvedSandboxOptions = z.output<typeof sandboxOptionsSchema> & {
  /** What the runner enforces for `network` (undefined: no network device). */
  vmNetwork?: VmNetwork;
  vmPorts?: { hostIp: string; hostPort: number; guestPort: number }[];
  /** The root folder the image resolved to (undefined: the default image). */
  root?: string;
  /** The disk image the root is on (`image: { disk }`). */
  rootDisk?: RootDisk;
  imageDigest?: string;
};

export const execOptionsSchema = z
  .object({
    env: envRecord.default({}),
    cwd: absolutePath.optional(),
    user: userSchema.optional(),
    stdin: z.union([z.string(), z.instanceof(Buffer), z.instanceof(Uint8Array), z.literal("pipe"), z.literal("ignore")]).optional(),
    timeoutMs: z.number().int().min(1).max(2 ** 31 - 1).optional(),
    signal: z.instanceof(AbortSignal).optional(),
    encoding: z.enum(["utf8", "buffer"]).default("utf8"),
    maxBufferBytes: z.number().int().min(1).default(64 << 20),
  })
  .strict();
export type ExecOptions = z.input<typeof execOptionsSchema>;
export type ParsedExecOptions = z.output<typeof execOptionsSchema>;

export function checkArgv(command: unknown, args: unknown): string[] {
  if (typeof command !== "string" || command === "" || command.includes("\0"))
    throw new ConfigError("command", "command: must be a non-empty string naming the program to run");
  if (!Array.isArray(args) || args.some((a) => typeof a !== "string" || a.includes("\0")))
    throw new ConfigError("args", "args: must be an array of strings without NUL characters");
  return [command, ...(args as string[])];
}
