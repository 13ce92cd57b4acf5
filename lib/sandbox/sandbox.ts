// The API users call: a microVM that runs processes on demand.
import { EventEmitter } from "node:events";
import { Readable } from "node:stream";
import type net from "node:net";
import { setTimeout as delay } from "node:timers/promises";
import {
  BootTimeoutError,
  ConfigError,
  ExecAbortedError,
  ExecFailedError,
  GuestConnectionError,
  GuestCrashedError,
  GuestSetupError,
  KrunboxError,
  SandboxConfigError,
  SandboxCrashedError,
  SandboxStoppedError,
} from "../errors.js";
import {
  checkArgv,
  execOptionsSchema,
  sandboxOptionsSchema,
  spawnOptionsSchema,
  type ExecBufferOptions,
  type ExecOptions,
  type ParsedSpawnOptions,
  type ResolvedSandboxOptions,
  type SandboxOptions,
  type SpawnOptions,
} from "./options.js";
import { ExecChannel } from "./channel.js";
import { collect, type ExecResult } from "./exec.js";
import { SandboxProcess } from "./process.js";
import { resolveRoot } from "./root.js";
import { execPayload, MAX_FRAME, type ExecRequest } from "./protocol.js";
import { createSocketDir, type SocketDir } from "./socket-dir.js";
import { SandboxFs } from "../fs/sandbox-fs.js";
import { SandboxPool, type PoolOptions } from "../pool/pool.js";
import { holdImage } from "../images/cache.js";
import { resolveNetwork, type ConnectionEvent, type NetworkOption } from "../network/policy.js";
import { connectGuestPort, resolvePorts, type PortSpec, type PublishedPort } from "../network/ports.js";
import { VirtualMachine } from "../vm/vm.js";
import { parseOptions } from "../validate.js";
import { bindSources, resolveVolumes, type ResolvedVolumes } from "../volumes/spec.js";
import { Volume } from "../volumes/volumes.js";

// The environment must leave room for the command in one exec request.
const MAX_ENV_BYTES = MAX_FRAME - (64 << 10);
const envList = (env: Record<string, string>) => Object.entries(env).map(([k, v]) => `${k}=${v}`);

function checkEnvSize(env: Record<string, string>): void {
  const envBytes = Buffer.byteLength(JSON.stringify(envList(env)));
  if (envBytes > MAX_ENV_BYTES)
    throw new ConfigError(
      "env",
      `env: takes ${envBytes} bytes; at most ${MAX_ENV_BYTES} fit in the guest agent's exec requests beside the command (pass large data through stdin or a volume)`,
    );
}

/** The warm pool's hand-out (lib/pool): volumes attached to the running VM, env added. Not part of the API. */
export const handOut = Symbol("krunbox.handOut");

function checkRequestSize(request: ExecRequest): void {
  const bytes = Buffer.byteLength(execPayload(request)) + 1;
  if (bytes <= MAX_FRAME) return;
  const field = Buffer.byteLength(JSON.stringify(request.argv)) * 2 > bytes ? "args" : "options.env";
  throw new ConfigError(
    field,
    `${field}: the command's arguments and environment take ${bytes} bytes, more than one exec request carries (${MAX_FRAME}); pass large data through stdin or a volume`,
  );
}

// Crash messages may come from the guest (a "Kernel panic" line on its
// console, its agent's setup error): bounded, quoted and marked as such.
const GUEST_TEXT_MAX = 240;
function crashReason(err: KrunboxError): string {
  if (!(err instanceof GuestCrashedError || err instanceof GuestSetupError)) return err.message;
  const text = err.message.length > GUEST_TEXT_MAX ? `${err.message.slice(0, GUEST_TEXT_MAX)}…` : err.message;
  // JSON escapes control characters; these would reorder or hide text.
  const quoted = JSON.stringify(text).replace(/[\u007f-\u009f\u200b-\u200f\u202a-\u202e\u2066-\u2069]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
  return `${err.name}, guest output (untrusted): ${quoted}`;
}

export type SandboxState = "creating" | "running" | "stopping" | "stopped" | "crashed";

/**
 * Checks options as Sandbox.create does first, before it pulls or boots
 * anything: the schema, the network policy, published ports, bind sources.
 */
export function checkSandboxOptions(options: SandboxOptions = {}): ResolvedSandboxOptions {
  const resolved: ResolvedSandboxOptions = parseOptions(sandboxOptionsSchema, options, "");
  resolved.vmNetwork = resolveNetwork(resolved.network as NetworkOption);
  resolved.vmPorts = resolvePorts(resolved.ports as (string | number | PortSpec)[]);
  bindSources(resolved.volumes);
  return resolved;
}

export type { ExecResult } from "./exec.js";

/** A Sandbox's events: its state changes, and every egress decision of its network. */
export interface SandboxEvents {
  state: [state: SandboxState];
  connection: [event: ConnectionEvent];
}

/**
 * A sandbox: one microVM with the krunbox agent, running processes on
 * request. Create with `await Sandbox.create()`, end with `stop()` (or
 * `await using`). Events: "state" (SandboxState), "connection"
 * (ConnectionEvent: every egress decision).
 *
 * A running sandbox keeps Node alive, as a child process does, until it
 * stops or `unref()` lets Node exit without it (the VM then ends with
 * Node). Processes and `sb.fs` calls in flight keep Node alive either way.
 */
export class Sandbox extends EventEmitter<SandboxEvents> {
  /** "creating", "running", "stopping", "stopped" or "crashed". */
  get state(): SandboxState {
    return this.#state;
  }
  /** Settles when the sandbox has stopped (resolves) or crashed (rejects). */
  readonly closed: Promise<void>;
  /** "kvm" or "tcg" (qemu backend), "kvm" (libkrun). */
  get accel(): string | undefined {
    return this.#vm.accel;
  }
  /**
   * Files inside the sandbox, in Node's `fs/promises` shape: as the
   * sandbox's user, on the guest's view of paths (root, volumes, tmpfs);
   * relative paths resolve against the workdir.
   */
  readonly fs: SandboxFs;
  /** Published ports as bound: [{ guest, host, hostIp }] (host port 0 resolved). */
  get ports(): PublishedPort[] {
    return this.#vm.ports;
  }

  #state: SandboxState = "creating";
  #vm: VirtualMachine;
  #options: ResolvedSandboxOptions;
  #socketDir: SocketDir;
  #execs: ExecChannel;
  #crash: KrunboxError | undefined;
  /** What Volume.remove and removeImage must refuse while we run. */
  #holds: (() => void)[];
  /** Host folders mounted in the guest (sb.fs watches them on the host too). */
  #shares: ResolvedVolumes["shares"];

  private constructor(options: ResolvedSandboxOptions, volumes: ResolvedVolumes) {
    super();
    this.#options = options;
    // Named volumes stay marked in use (Volume.remove refuses) while we run.
    this.#holds = volumes.named.map((name) => Volume.hold(name));
    // ...and so does its image (removeImage refuses).
    if (options.imageDigest) this.#holds.push(holdImage(options.imageDigest));
    this.#shares = [...volumes.shares];
    this.#socketDir = createSocketDir();
    this.#execs = new ExecChannel(this.#socketDir.socketPath);
    this.fs = new SandboxFs({
      socketPath: this.#socketDir.fsSocketPath,
      user: options.user ?? "",
      workdir: options.workdir,
      shares: this.#shares,
      gone: () => this.#sandboxGone(),
      whyClosed: () => this.#whyClosed(),
    });
    try {
      this.#vm = VirtualMachine.start({
        // "auto" is qemu, the backend that CI exercises; libkrun on request.
        backend: options.backend === "libkrun" ? "libkrun" : "qemu",
        accel: options.accel,
        cpus: options.cpus,
        memoryMiB: options.memoryMiB,
        bootTimeoutMs: options.bootTimeoutMs,
        libkrunPath: options.libkrunPath,
        // The image folder is shared read-only; the guest gets a
        // copy-on-write root over it (overlayfs, tmpfs upper).
        rootPath: options.root,
        rootReadOnly: true,
        rootDisk: options.rootDisk,
        command: [],
        agentSocketPath: this.#socketDir.socketPath,
        agentFsSocketPath: this.#socketDir.fsSocketPath,
        forwardSocketPath: this.#socketDir.forwardPath,
        network: options.vmNetwork,
        ports: options.vmPorts,
        shares: volumes.shares,
        tmpfs: volumes.tmpfs,
      });
      this.#vm.on("connection", (e) => this.emit("connection", e));
    } catch (err) {
      this.#cleanup();
      throw err;
    }
    this.closed = this.#vm.exited.then(
      () => {
        this.#cleanup();
        if (this.state !== "stopping") {
          this.#crash = new SandboxCrashedError("the sandbox's VM ended on its own");
          this.#setState("crashed");
          throw this.#crash;
        }
        this.#setState("stopped");
      },
      (err: KrunboxError) => {
        this.#cleanup();
        if (this.state === "stopping") return this.#setState("stopped");
        this.#crash = new SandboxCrashedError(`the sandbox crashed: ${crashReason(err)}`, { cause: err });
        this.#setState("crashed");
        throw this.#crash;
      },
    );
    this.closed.catch(() => {});
  }

  /**
   * A warm pool of `size` sandboxes booted with these options, handed out
   * by `pool.acquire({ volumes?, env? })` (see SandboxPool).
   */
  static pool(options: PoolOptions): SandboxPool {
    return new SandboxPool(options);
  }

  /**
   * Boots a sandbox and resolves once it can run processes. Options are
   * validated first (ConfigError names the field); what only the guest can
   * tell (the workdir exists, the user is in /etc/passwd) is checked once
   * it is up (SandboxConfigError). Nothing is left behind if either fails.
   */
  static async create(options: SandboxOptions = {}): Promise<Sandbox> {
    const resolved = checkSandboxOptions(options);
    await resolveRoot(resolved, options.workdir !== undefined);
    checkEnvSize(resolved.env);
    const sb = new Sandbox(resolved, await resolveVolumes(resolved.volumes));
    try {
      await sb.#vm.ready;
    } catch {
      await sb.closed.catch(() => {});
      throw sb.#crash?.cause ?? sb.#crash;
    }
    try {
      await sb.#checkInGuest();
    } catch (err) {
      await sb.stop();
      throw sb.#crash ?? err;
    }
    sb.#setState("running");
    return sb;
  }

  // Once, instead of failing every exec: the agent resolves the default
  // user and workdir as it would for a process, and starts nothing.
  async #checkInGuest(): Promise<void> {
    const { workdir, user, bootTimeoutMs } = this.#options;
    // Part of booting: bounded like the rest of it.
    const signal = AbortSignal.timeout(bootTimeoutMs);
    // Its connection stays open for the first exec.
    const check = new SandboxProcess(
      this.#execs,
      { argv: [], env: [], cwd: workdir, user: user ?? "", timeoutMs: 0, stdin: false, signal, checkOnly: true },
      () => this.#crash,
      this.#whyClosed,
    );
    try {
      await check.exited;
    } catch (err) {
      if (err instanceof ExecAbortedError)
        throw new BootTimeoutError(`the guest agent did not answer its first request within bootTimeoutMs (${bootTimeoutMs} ms)`);
      if (!(err instanceof ExecFailedError) || !err.field) throw err;
      if (err.field === "cwd")
        throw new SandboxConfigError("workdir", `${err.message.replace(/^cwd /, "workdir ")}; pick a folder the image has, or mount a volume there`);
      throw new SandboxConfigError("user", err.message);
    }
  }

  #setState(state: SandboxState) {
    if (this.#state === state) return;
    this.#state = state;
    this.emit("state", state);
  }

  #cleanup() {
    this.#execs.close();
    this.fs.closeIdle();
    this.#holds.splice(0).forEach((release) => release());
    this.#socketDir.remove();
  }

  /**
   * Makes a booted sandbox what a pool's caller asked for: `env` added to
   * its defaults, `volumes` mounted in the running guest (host folders
   * through the runner's share tree, read-only enforced on the host as at
   * boot). Rejects (and the pool stops this sandbox) if one cannot be.
   */
  async [handOut](volumes: ResolvedVolumes, env: Record<string, string>): Promise<void> {
    if (this.state !== "running") throw this.#sandboxGone();
    const merged = { ...this.#options.env, ...env };
    checkEnvSize(merged);
    this.#options.env = merged;
    for (const name of volumes.named) this.#holds.push(Volume.hold(name));
    for (const share of volumes.shares) {
      await this.#vm.attach(share);
      this.#shares.push(share);
    }
    for (const tmpfs of volumes.tmpfs) await this.#vm.attach({ tmpfs });
  }

  #sandboxGone = (): KrunboxError | undefined =>
    this.state === "running" ? undefined : (this.#crash ?? new SandboxStoppedError(`the sandbox is ${this.state}`));

  // A dropped exec connection usually means the VM is ending: wait briefly
  // for its verdict, so a crash is reported as one.
  #whyClosed = async (): Promise<KrunboxError> => {
    if (this.state === "running") await Promise.race([this.closed.catch(() => {}), delay(3000)]);
    return this.#sandboxGone() ?? new SandboxStoppedError("the connection to the guest agent was lost");
  };

  /**
   * Starts a process; returns at once. `stdin: "pipe"` gives a writable
   * `stdin`; `input` (a string, Buffer or Readable) is written and closed;
   * `tty` gives it a terminal. If it cannot start (no such program, a bad
   * user or cwd), `exited` rejects with ExecFailedError and its streams end
   * with that error.
   */
  spawn(command: string, args: string[] = [], options: SpawnOptions = {}): SandboxProcess {
    return this.#spawn(checkArgv(command, args), parseOptions(spawnOptionsSchema, options, "options"));
  }

  #spawn(argv: string[], o: ParsedSpawnOptions): SandboxProcess {
    if (this.state !== "running") throw new SandboxStoppedError(`cannot run ${argv[0]}: the sandbox is ${this.state}`);
    const request: ExecRequest = {
      argv,
      env: envList({ ...this.#options.env, ...o.env }),
      cwd: o.cwd ?? this.#options.workdir,
      user: o.user ?? this.#options.user ?? "",
      timeoutMs: o.timeoutMs ?? 0,
      tty: o.tty,
    };
    checkRequestSize(request);
    const stdin = o.stdin === "pipe" || o.input !== undefined;
    const proc = new SandboxProcess(this.#execs, { ...request, stdin, signal: o.signal }, this.#sandboxGone, this.#whyClosed);
    const input = o.input;
    if (input instanceof Readable) {
      // A failing input ends the process; one that outlives it is let go.
      const onError = (err: Error) => proc.abort(err);
      input.once("error", onError).pipe(proc.stdin!);
      void proc.exited.finally(() => input.off("error", onError).unpipe(proc.stdin!)).catch(() => {});
    } else if (input !== undefined) {
      proc.stdin!.end(typeof input === "string" ? input : Buffer.from(input.buffer, input.byteOffset, input.byteLength));
    }
    return proc;
  }

  /**
   * Runs a program to completion (never through a shell: see `sh()`) and
   * collects its output. A non-zero exit is a result; a program that
   * cannot start rejects with ExecFailedError; a timeout, an abort or a
   * lost sandbox reject with a typed error (the process is killed in the
   * guest) that carries the output so far.
   */
  exec(command: string, args?: string[], options?: ExecOptions): Promise<ExecResult<string>>;
  exec(command: string, args: string[], options: ExecBufferOptions): Promise<ExecResult<Buffer>>;
  exec(command: string, args: string[], options: ExecOptions | ExecBufferOptions): Promise<ExecResult<string | Buffer>>;
  async exec(command: string, args: string[] = [], options: ExecOptions | ExecBufferOptions = {}): Promise<ExecResult<string | Buffer>> {
    const started = performance.now();
    const argv = checkArgv(command, args);
    const o = parseOptions(execOptionsSchema, options, "options");
    return collect(this.#spawn(argv, o), argv, o, started);
  }

  /**
   * Runs `script` with the image's /bin/sh (`/bin/sh -c script`): pipes,
   * redirections, globs and variables work as in a shell. Same options and
   * result as exec().
   */
  sh(script: string, options?: ExecOptions): Promise<ExecResult<string>>;
  sh(script: string, options: ExecBufferOptions): Promise<ExecResult<Buffer>>;
  sh(script: string, options: ExecOptions | ExecBufferOptions): Promise<ExecResult<string | Buffer>>;
  async sh(script: string, options: ExecOptions | ExecBufferOptions = {}): Promise<ExecResult<string | Buffer>> {
    if (typeof script !== "string" || script.includes("\0"))
      throw new ConfigError("script", "script: must be a string without NUL characters");
    return this.exec("/bin/sh", ["-c", script], options);
  }

  /**
   * A TCP connection to `port` inside the sandbox (its 127.0.0.1 or ::1),
   * with no host port opened and no network device needed. Rejects with
   * GuestConnectionError when nothing listens there. Ending your side ends
   * the connection (vsock has no half-close): read the reply, then close.
   */
  async connect(port: number): Promise<net.Socket> {
    if (!Number.isInteger(port) || port < 1 || port > 65535)
      throw new ConfigError("port", `port: ${String(port)} is not a TCP port (1-65535)`);
    if (this.state !== "running") throw new GuestConnectionError(`cannot connect to guest port ${port}: the sandbox is ${this.state}`);
    return connectGuestPort(this.#socketDir.forwardPath, port);
  }

  /**
   * Lets Node exit while the sandbox runs (as `child.unref()`); the VM then
   * ends with Node. Processes and `sb.fs` calls in flight still keep Node
   * alive. Returns the sandbox.
   */
  unref(): this {
    this.#vm.unref();
    return this;
  }

  /** Undoes unref(): the running sandbox keeps Node alive again. */
  ref(): this {
    this.#vm.ref();
    return this;
  }

  /** Powers the VM off (processes get SIGTERM, then SIGKILL). Idempotent. */
  async stop(graceMs = 5000): Promise<void> {
    if (this.state === "creating" || this.state === "running") {
      this.#setState("stopping");
      await this.#vm.stop(graceMs);
    }
    await this.closed.catch(() => {});
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}
