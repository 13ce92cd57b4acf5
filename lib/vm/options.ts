// The shape of VmOptions (zod). Ranges, paths and runtime files are checked
// by the addon (src/common/vm_config.cc), which names the same fields; this
// schema refuses what the addon would never see: unknown or misspelt keys
// and wrong types.
import path from "node:path";
import { z } from "zod";
import type { ConnectRequest } from "../network/policy.js";

const noControlCharacters = (s: string) => !/[\0-\x1f\x7f]/.test(s);

/** An absolute, normalized path (a workdir, a cwd): what the guest resolves. */
export const absolutePath = z
  .string()
  .refine((p) => path.posix.isAbsolute(p) && path.posix.normalize(p) === p, {
    message: "must be an absolute, normalized path such as /work",
  })
  .refine(noControlCharacters, { message: "must not contain control characters (newlines, NUL...)" });

// The guest agent mounts its own /proc, /sys and /dev over these.
const RESERVED = ["/proc", "/sys", "/dev"];

/** Where a share, tmpfs or volume is mounted in the guest. */
export const guestMountPath = absolutePath
  .refine((p) => p !== "/", { message: 'cannot be "/" (the root is the image)' })
  .refine((p) => !p.endsWith("/"), { message: "must not end with /" })
  .refine((p) => !RESERVED.some((r) => p === r || p.startsWith(`${r}/`)), {
    message: `cannot be ${RESERVED.join(", ")} or below them: the guest's kernel file systems live there`,
  });

const netRule = z
  .object({ kind: z.enum(["any", "name", "suffix", "cidr"]), value: z.string().optional(), port: z.number().int().optional(), text: z.string() })
  .strict();

/** A network policy as the runner enforces it; lib/network/policy.ts builds it from the `network` option. */
const vmNetworkSchema = z
  .object({
    allow: z.array(netRule),
    deny: z.array(netRule),
    hosts: z.record(z.string(), z.array(z.string())),
    onConnect: z.custom<(c: ConnectRequest) => boolean | Promise<boolean>>((f) => typeof f === "function", "must be a function").optional(),
  })
  .strict();

export const vmOptionsSchema = z
  .object({
    backend: z.enum(["qemu", "libkrun"]).optional(),
    /** qemu only: "auto" uses KVM when it can boot the guest, else TCG. */
    accel: z.enum(["auto", "kvm", "tcg"]).optional(),
    cpus: z.number().int().optional(),
    memoryMiB: z.number().int().optional(),
    /** Host folder that becomes the guest's /; default: the built-in busybox root. */
    rootPath: z.string().optional(),
    /** Share the root read-only; the guest then gets a copy-on-write root
     * (overlayfs over a tmpfs) and the host folder is never modified.
     * Default: true for the built-in root, false otherwise. */
    rootReadOnly: z.boolean().optional(),
    /** A disk image whose file system becomes the root, read-only for the VM
     * (the guest writes to a copy-on-write layer); rootPath then only serves
     * libkrun's own init. */
    rootDisk: z
      .object({ path: z.string(), format: z.enum(["raw", "qcow2"]), partition: z.number().int().optional() })
      .strict()
      .optional(),
    shares: z
      .array(
        z
          .object({
            /** Absolute host folder, or a regular file (bound onto a file in the guest). */
            hostPath: z.string(),
            /** Absolute mount point in the guest (created if missing). */
            guestPath: guestMountPath,
            /** Enforced on the host: the guest cannot write, whatever it does. */
            readOnly: z.boolean().optional(),
          })
          .strict(),
      )
      .optional(),
    /** Size-limited tmpfs mounts in the guest. */
    tmpfs: z.array(z.object({ guestPath: guestMountPath, sizeMiB: z.number().int() }).strict()).optional(),
    vsock: z
      .array(
        z
          .object({
            port: z.number().int(),
            socketPath: z.string(),
            /** true: the host connects to socketPath to reach the guest's listener on
             * `port`; false: a guest connecting to host port `port` reaches the host
             * program listening on socketPath. */
            listen: z.boolean(),
          })
          .strict(),
      )
      .optional(),
    /** Program and arguments to run to completion; [] for a VM that serves
     * execs (on agentSocketPath) until stopped. */
    command: z.array(z.string()),
    /** Host Unix socket that reaches the guest agent's exec service. */
    agentSocketPath: z.string().optional(),
    /** Host Unix socket that reaches the guest agent's file service (sb.fs). */
    agentFsSocketPath: z.string().optional(),
    /** Host Unix socket that reaches the guest agent's port forwarder (connections to guest TCP ports). */
    forwardSocketPath: z.string().optional(),
    /** Egress policy, enforced by the runner; without it the VM has no network device. */
    network: vmNetworkSchema.optional(),
    /** Host TCP ports whose connections reach guest ports (needs forwardSocketPath). */
    ports: z.array(z.object({ hostIp: z.string(), hostPort: z.number().int(), guestPort: z.number().int() }).strict()).optional(),
    env: z.record(z.string(), z.string()).optional(),
    workdir: absolutePath.optional(),
    /** File that receives the guest's serial console. */
    consolePath: z.string().optional(),
    /** At most this much console output is kept (default 16 MiB); the rest is dropped. */
    consoleLimitBytes: z.number().int().optional(),
    bootTimeoutMs: z.number().int().optional(),
    /** libkrun only: path of libkrun.so.1 (default: KRUNBOX_LIBKRUN or the system's). */
    libkrunPath: z.string().optional(),
  })
  .strict();

export type VmOptions = z.input<typeof vmOptionsSchema>;
export type ShareOptions = NonNullable<VmOptions["shares"]>[number];
export type VsockPortOptions = NonNullable<VmOptions["vsock"]>[number];
export type VmNetwork = z.input<typeof vmNetworkSchema>;
export type NetRule = z.input<typeof netRule>;
