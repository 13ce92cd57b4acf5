// Validation of every user option (zod, strict), with errors that name the field.
import { Readable } from "node:stream";
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
    /** Virtual CPUs, 1 to 64. Default: 1. */
    cpus: z.number().int().min(1).max(64).default(VM_DEFAULTS.cpus),
    /** Guest memory in MiB, 64 to 1048576. Default: 512. */
    memoryMiB: z.number().int().min(64).max(1024 * 1024).default(VM_DEFAULTS.memoryMiB),
    /** Environment of every process, over the image's Env. Default: {} (the image's only). */
    env: envRecord.default({}),
    /** Working folder of processes and relative `sb.fs` paths. Default: the image's WorkingDir, else "/". */
    workdir: absolutePath.default(VM_DEFAULTS.workdir),
    /** Who processes and sb.fs run as: a name from the image's /etc/passwd, "uid" or "uid:gid". Default: the image's User, else root. */
    user: userSchema.optional(),
    /** "auto" (qemu), "qemu" or "libkrun". Default: "auto". */
    backend: z.enum(["auto", "qemu", "libkrun"]).default("auto"),
    /** "auto" (KVM when it can run the guest, else TCG), "kvm" or "tcg". Default: "auto". */
    accel: z.enum(["auto", "kvm", "tcg"]).default("auto"),
    /** How long booting may take, in ms (1000 to 3600000). Default: 60000. */
    bootTimeoutMs: z.number().int().min(1000).max(3_600_000).default(VM_DEFAULTS.bootTimeoutMs),
    /** libkrun.so.1 to load (backend "libkrun"). Default: the system's, or KRUNBOX_LIBKRUN. */
    libkrunPath: z.string().optional(),
    /** The root: an OCI reference, { ref, ...pull options }, { dir } for a local root folder or { disk } for a disk image. Default: krunbox's busybox image. */
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
  /** Bind, named and tmpfs volumes, or Docker-style strings ("./data:/data:ro"). Default: none. */
  volumes?: VolumeSpec[];
  /** "none" (no network device), "public", or a policy. Default: "none". */
  network?: NetworkOption;
  /** Published ports: "8080:80", "127.0.0.1:8080:80", or { guest, host?, hostIp? }. Default: none. */
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

const terminalSize = z.number().int().min(1).max(65535);
const outputCallback = z.custom<(chunk: string | Buffer) => void>((f) => typeof f === "function", "must be a function");

// What spawn and exec share.
const processOptions = {
  /** Variables over the sandbox's env. Default: {}. */
  env: envRecord.default({}),
  /** Working folder (absolute). Default: the sandbox's workdir. */
  cwd: absolutePath.optional(),
  /** A name from the image's /etc/passwd, "uid" or "uid:gid". Default: the sandbox's user. */
  user: userSchema.optional(),
  /** Data for stdin, which is then closed: a string, bytes or a Readable. Default: none (stdin is empty). */
  input: z
    .union([z.string(), z.instanceof(Uint8Array), z.custom<Readable>((v) => v instanceof Readable, "must be a string, Buffer, Uint8Array or Readable")])
    .optional(),
  /**
   * A pseudo-terminal of cols x rows as stdin, stdout and stderr, and the
   * process's controlling terminal: its output (stderr merged) arrives on
   * stdout, `resize()` changes its size, ^C typed into stdin interrupts
   * its foreground job. Default: pipes.
   */
  tty: z.object({ cols: terminalSize, rows: terminalSize }).strict().optional(),
  /** Kill the process group after this many ms (1 to 2^31-1). Default: none. */
  timeoutMs: z.number().int().min(1).max(2 ** 31 - 1).optional(),
  /** Kills the process group when aborted. */
  signal: z.instanceof(AbortSignal).optional(),
};

export const spawnOptionsSchema = z
  .object({
    ...processOptions,
    /** "pipe": `proc.stdin` is a Writable; "ignore": stdin is empty. Default: "ignore", or `input` when given. */
    stdin: z.enum(["pipe", "ignore"]).optional(),
  })
  .strict()
  .refine((o) => !(o.stdin === "pipe" && o.input !== undefined), {
    path: ["input"],
    message: 'gives stdin its data and closes it; drop it, or drop stdin: "pipe" and write to proc.stdin',
  });
export type SpawnOptions = z.input<typeof spawnOptionsSchema>;
export type ParsedSpawnOptions = z.output<typeof spawnOptionsSchema>;

export const execOptionsSchema = z
  .object({
    ...processOptions,
    /** "ignore" only: exec has no stream to write to (pass data in `input`, or use spawn). Default: "ignore". */
    stdin: z
      .enum(["pipe", "ignore"])
      .refine((v) => v === "ignore", 'exec has no stream to write to: pass the data in "input", or use spawn() for stdin: "pipe"')
      .optional(),
    /** "utf8": stdout and stderr are strings; "buffer": Buffers. Default: "utf8". */
    encoding: z.enum(["utf8", "buffer"]).default("utf8"),
    /** Output kept per exec (both streams); past it the process is killed (MaxBufferExceededError). Default: 64 MiB. */
    maxBufferBytes: z.number().int().min(1).default(64 << 20),
    /** Called with each piece of stdout as it arrives (a string, or a Buffer with encoding "buffer"). */
    onStdout: outputCallback.optional(),
    /** Called with each piece of stderr as it arrives. */
    onStderr: outputCallback.optional(),
  })
  .strict();
type ExecOptionsBase = Omit<z.input<typeof execOptionsSchema>, "encoding" | "onStdout" | "onStderr">;
/** exec()'s options: with encoding "utf8" (the default) output is strings. */
export type ExecOptions = ExecOptionsBase & {
  /** "utf8": stdout and stderr are strings. Default: "utf8". */
  encoding?: "utf8";
  /** Called with each piece of stdout as it arrives (whole characters). */
  onStdout?: (chunk: string) => void;
  /** Called with each piece of stderr as it arrives (whole characters). */
  onStderr?: (chunk: string) => void;
};
/** exec()'s options with encoding "buffer": output is Buffers. */
export type ExecBufferOptions = ExecOptionsBase & {
  encoding: "buffer";
  onStdout?: (chunk: Buffer) => void;
  onStderr?: (chunk: Buffer) => void;
};
export type ParsedExecOptions = z.output<typeof execOptionsSchema>;

export function checkArgv(command: unknown, args: unknown): string[] {
  if (typeof command !== "string" || command === "" || command.includes("\0"))
    throw new ConfigError("command", "command: must be a non-empty string naming the program to run");
  if (!Array.isArray(args) || args.some((a) => typeof a !== "string" || a.includes("\0")))
    throw new ConfigError("args", "args: must be an array of strings without NUL characters");
  return [command, ...(args as string[])];
}
