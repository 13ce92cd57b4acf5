// One VM: a thin typed layer over the addon's Vm, which spawns the runner.
import { EventEmitter } from "node:events";
import fs from "node:fs";
import {
  BootTimeoutError,
  ConfigError,
  GuestCrashedError,
  GuestSetupError,
  KrunboxError,
  KvmUnavailableError,
  LibkrunNotFoundError,
  PortInUseError,
  VmmFailedError,
} from "../errors.js";
import type { ConnectionEvent, ConnectRequest } from "../network/policy.js";
import type { PublishedPort } from "../network/ports.js";
import { loadNative, type NativeVm } from "./native.js";
import { vmOptionsSchema, type VmOptions } from "./options.js";
import { parseOptions } from "../validate.js";
import { VM_DEFAULTS } from "./defaults.js";
import { accelCachePath, bootKernel, defaultImage, qemuPrograms, runtimePaths } from "./runtime.js";

export type { ShareOptions, VmOptions, VsockPortOptions } from "./options.js";

/** What can be attached to a running VM: a host folder, or a tmpfs. */
export type VmAttachment =
  | { hostPath: string; guestPath: string; readOnly: boolean }
  | { tmpfs: { guestPath: string; sizeMiB: number } };

export interface VmExit {
  /** The command's exit code, or null if a signal ended it (or it never ran). */
  code: number | null;
  signal: number | null;
  /** stop() ended the VM. */
  stopped: boolean;
  /** ...and the guest did not power off within the grace period. */
  forced: boolean;
}

export type VmState = "booting" | "running" | "stopping" | "exited" | "failed";

interface RunnerEvent {
  event: string;
  [key: string]: unknown;
}

function errorFromRunner(ev: RunnerEvent): KrunboxError {
  const message = String(ev.message ?? "unknown error");
  const console = String(ev.console ?? "");
  switch (ev.code) {
    case "CONFIG":
      return new ConfigError(String(ev.field ?? "config"), message);
    case "LIBKRUN_NOT_FOUND":
    case "LIBKRUN_TOO_OLD":
      return new LibkrunNotFoundError(message);
    case "KVM_UNAVAILABLE":
      return new KvmUnavailableError(message);
    case "BOOT_TIMEOUT":
      return new BootTimeoutError(message, console);
    case "GUEST_CRASHED":
      return new GuestCrashedError(message, console);
    case "GUEST_SETUP_FAILED":
      return new GuestSetupError(message, console);
    case "PORT_IN_USE":
      return new PortInUseError(message);
    default:
      return new VmmFailedError(message, console);
  }
}

let onlyCanonicalShares = false;

/**
 * From now on, in this process, a share's host path must already be
 * canonical (no symbolic link in any part): for a caller that checked the
 * real path itself (krunbox mcp's --allow-bind), so that a folder swapped
 * for a link after its check is refused instead of followed. Not part of
 * the package's API.
 */
export function shareOnlyCanonicalPaths(): void {
  onlyCanonicalShares = true;
}

const withoutLinks = (hostPath: string) => {
  try {
    return fs.realpathSync(hostPath);
  } catch {
    return hostPath;
  }
};

/**
 * A share's host path with its symbolic links resolved: the runner refuses
 * a link in any part of a path it shares, so that a link swapped in after
 * this point (by a guest, in a folder it can write) is an error, not an
 * escape. A path that does not resolve is passed as is: the runner names it.
 */
function canonical(hostPath: string, field: string): string {
  const real = withoutLinks(hostPath);
  if (onlyCanonicalShares && real !== hostPath)
    throw new ConfigError(field, `${field}: ${hostPath} now leads to ${real} (a part of it became a symbolic link since it was checked); refused`);
  return real;
}

function nativeConfig(options: VmOptions): object {
  const backend = options.backend ?? "qemu";
  const paths = runtimePaths();
  const usesBuiltinRoot = options.rootPath === undefined;
  return {
    ...options,
    backend,
    accel: options.accel ?? "auto",
    cpus: options.cpus ?? VM_DEFAULTS.cpus,
    memoryMiB: options.memoryMiB ?? VM_DEFAULTS.memoryMiB,
    bootTimeoutMs: options.bootTimeoutMs ?? VM_DEFAULTS.bootTimeoutMs,
    workdir: options.workdir ?? VM_DEFAULTS.workdir,
    consoleLimitBytes: options.consoleLimitBytes ?? VM_DEFAULTS.consoleLimitBytes,
    rootPath: withoutLinks(options.rootPath ?? defaultImage()),
    shares: options.shares?.map((share, i) => ({ ...share, hostPath: canonical(share.hostPath, `shares[${i}].hostPath`) })),
    rootReadOnly: options.rootReadOnly ?? usesBuiltinRoot,
    env: Object.entries(options.env ?? {}).map(([k, v]) => `${k}=${v}`),
    network: options.network
      ? { enabled: true, allow: options.network.allow, deny: options.network.deny, hosts: options.network.hosts, askHost: !!options.network.onConnect }
      : { enabled: false },
    ...(backend === "qemu"
      ? { kernelPath: bootKernel(), initrdPath: paths.initrd, accelCachePath: accelCachePath(), ...qemuPrograms() }
      : {}),
  };
}

function toKrunboxError(err: unknown): unknown {
  const e = err as { code?: string; field?: string; message?: string };
  if (e?.code === "ERR_KRUNBOX_CONFIG") return new ConfigError(e.field ?? "config", e.message ?? "invalid config");
  if (e?.code === "ERR_KRUNBOX_SPAWN") return new VmmFailedError(e.message ?? "cannot start the runner");
  return err;
}

/**
 * A running microVM. Start it with `VirtualMachine.start()`; `exited`
 * settles when it ends (rejecting with a typed error if it failed).
 * Events: "state" (VmState), "accel" ({ accel, reason }), "connection"
 * (ConnectionEvent: every egress decision of a VM with a network).
 */
export class VirtualMachine extends EventEmitter {
  readonly exited: Promise<VmExit>;
  /** Resolves when the guest agent is up (rejects like `exited` if it never is). */
  readonly ready: Promise<void>;
  state: VmState = "booting";
  /** "kvm" or "tcg" once known. */
  accel: string | undefined;
  /** Published ports as bound (host port 0 resolved), once the runner bound them. */
  ports: PublishedPort[] = [];
  readonly pid: number;

  #native: NativeVm;
  #backend: string;
  #result: VmExit | KrunboxError | undefined;
  #attachments = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();
  #nextAttachment = 1;

  private constructor(options: VmOptions) {
    super();
    this.#backend = options.backend ?? "qemu";
    let resolveExit!: (e: VmExit) => void, rejectExit!: (e: Error) => void;
    let resolveReady!: () => void, rejectReady!: (e: Error) => void;
    this.exited = new Promise((res, rej) => ((resolveExit = res), (rejectExit = rej)));
    this.ready = new Promise((res, rej) => ((resolveReady = res), (rejectReady = rej)));
    // Nobody may await `ready`; its rejection is reported through `exited`.
    this.ready.catch(() => {});
    const onEvent = (line: string) => {
      let ev: RunnerEvent;
      try {
        ev = JSON.parse(line) as RunnerEvent;
      } catch {
        return;
      }
      switch (ev.event) {
        case "booting":
          this.accel = String(ev.accel);
          break;
        case "accel":
          this.accel = String(ev.accel);
          this.emit("accel", { accel: ev.accel, reason: ev.reason });
          break;
        case "ready":
          this.#setState("running");
          resolveReady();
          break;
        case "ports":
          this.ports = ev.ports as PublishedPort[];
          break;
        case "connection": {
          const { event: _, host, ...rest } = ev;
          this.emit("connection", { ...rest, ...(typeof host === "string" ? { host } : {}) } as ConnectionEvent);
          break;
        }
        case "connect-request":
          this.#askHost(options.network?.onConnect, ev);
          break;
        case "attached": {
          const pending = this.#attachments.get(Number(ev.id));
          this.#attachments.delete(Number(ev.id));
          if (typeof ev.error === "string") pending?.reject(new GuestSetupError(`cannot attach: ${ev.error}`, ""));
          else pending?.resolve();
          break;
        }
        case "exit":
          this.#result = {
            code: typeof ev.code === "number" ? ev.code : null,
            signal: typeof ev.signal === "number" ? ev.signal : null,
            stopped: ev.stopped === true,
            forced: ev.forced === true,
          };
          break;
        case "error":
          this.#result = errorFromRunner(ev);
          break;
        case "runner-exit": {
          for (const pending of this.#attachments.values()) pending.reject(new VmmFailedError("the VM ended before the attachment was made"));
          this.#attachments.clear();
          const result = this.#result ?? this.#resultFromRunnerExit(ev);
          if (result instanceof Error) {
            this.#setState("failed");
            rejectReady(result);
            rejectExit(result);
          } else {
            this.#setState("exited");
            rejectReady(new VmmFailedError("the VM ended before its guest agent was ready"));
            resolveExit(result);
          }
          break;
        }
      }
    };
    try {
      this.#native = new (loadNative().Vm)(runtimePaths().runner, nativeConfig(options), onEvent);
      this.pid = this.#native.start();
    } catch (err) {
      throw toKrunboxError(err);
    }
  }

  /** Boots a VM; throws ConfigError (naming the field) before anything starts. */
  static start(options: VmOptions): VirtualMachine {
    return new VirtualMachine(parseOptions(vmOptionsSchema, options, ""));
  }

  // libkrun's krun_start_enter exits the runner with the workload's status;
  // the qemu runner always reports an "exit" or "error" event first.
  #resultFromRunnerExit(ev: RunnerEvent): VmExit | KrunboxError {
    const stopped = this.state === "stopping";
    if (this.#backend === "libkrun" && typeof ev.code === "number")
      return { code: ev.code, signal: null, stopped, forced: false };
    if (stopped) return { code: null, signal: null, stopped: true, forced: true };
    return new VmmFailedError(`krunbox-runner ended unexpectedly (${JSON.stringify(ev)})`);
  }

  // onConnect's verdict; a throw, a rejection or anything but true refuses.
  async #askHost(onConnect: ((c: ConnectRequest) => boolean | Promise<boolean>) | undefined, ev: RunnerEvent) {
    const request: ConnectRequest = {
      ip: String(ev.ip),
      port: Number(ev.port),
      protocol: ev.protocol === "udp" ? "udp" : "tcp",
      ...(typeof ev.host === "string" ? { host: ev.host } : {}),
    };
    let allowed = false;
    try {
      allowed = (await onConnect?.(request)) === true;
    } catch {
      allowed = false;
    }
    this.#native.verdict(Number(ev.id), allowed);
  }

  /**
   * Mounts a host folder (read-only enforced on the host, as for `shares`)
   * or a tmpfs in the running guest. Rejects with GuestSetupError when the
   * runner or the guest cannot, VmmFailedError when the VM ends first.
   */
  attach(attachment: VmAttachment): Promise<void> {
    if (this.state !== "running") return Promise.reject(new VmmFailedError(`cannot attach to a VM that is ${this.state}`));
    let spec: VmAttachment;
    try {
      spec = "hostPath" in attachment ? { ...attachment, hostPath: canonical(attachment.hostPath, "hostPath") } : attachment;
    } catch (err) {
      return Promise.reject(err);
    }
    const id = this.#nextAttachment++;
    return new Promise((resolve, reject) => {
      this.#attachments.set(id, { resolve, reject });
      this.#native.attach(id, JSON.stringify(spec));
    });
  }

  #setState(state: VmState) {
    if (this.state === state) return;
    this.state = state;
    this.emit("state", state);
  }

  /** The running VM no longer keeps Node alive (as `child.unref()`); when Node exits, the VM ends with it. */
  unref(): void {
    this.#native.unref();
  }

  /** Undoes unref(): the running VM keeps Node alive again. */
  ref(): void {
    this.#native.ref();
  }

  /**
   * Asks the guest to power off (its command gets SIGTERM), kills the VM if
   * it has not ended after `graceMs`, and resolves with the exit. Idempotent.
   */
  async stop(graceMs = 5000): Promise<VmExit | undefined> {
    if (this.state === "booting" || this.state === "running") {
      this.#setState("stopping");
      this.#native.stop(graceMs);
    }
    return this.exited.catch(() => undefined);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}
