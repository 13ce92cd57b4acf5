// The API users call: a microVM that runs processes on demand.
import { EventEmitter } from "node:events";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import {
  BootTimeoutError,
  ConfigError,
  ExecAbortedError,
  ExecFailedError,
  ExecTimeoutError,
  KrunboxError,
  SandboxConfigError,
  SandboxCrashedError,
  SandboxStoppedError,
} from "../errors.js";
import {
  checkArgv,
  execOptionsSchema,
  parseOptions,
  sandboxOptionsSchema,
  type ExecOptions,
  type ParsedExecOptions,
  type ResolvedSandboxOptions,
  type SandboxOptions,
} from "./options.js";
import { SandboxProcess, type ProcessExit } from "./process.js";
import { holdImage, pullImage } from "../images/cache.js";
import { VirtualMachine } from "../vm/vm.js";
import { checkVolumes, resolveVolumes, Volume, type ResolvedVolumes, type VolumePlan, type VolumeSpec } from "../volumes/volumes.js";

export type SandboxState = "creating" | "running" | "stopping" | "stopped" | "crashed";

/** Checks options as Sandbox.create does first, before it pulls or boots anything. */
export function checkSandboxOptions(options: SandboxOptions = {}): { resolved: ResolvedSandboxOptions; volumes: VolumePlan } {
  const resolved: ResolvedSandboxOptions = parseOptions(sandboxOptionsSchema, options, "");
  return { resolved, volumes: checkVolumes(resolved.volumes as VolumeSpec[]) };
}

export interface ExecResult<T extends string | Buffer = string> extends ProcessExit {
  stdout: T;
  stderr: T;
}

/**
 * A sandbox: one microVM with the krunbox agent, running processes on
 * request. Create with `await Sandbox.create()`, end with `stop()` (or
 * `await using`). Events: "state" (SandboxState).
 */
export class Sandbox extends EventEmitter {
  state: SandboxState = "creating";
  /** Settles when the sandbox has stopped (resolves) or crashed (rejects). */
  readonly closed: Promise<void>;
  /** "kvm" or "tcg" (qemu backend), "kvm" (libkrun). */
  get accel(): string | undefined {
    return this.#vm.accel;
  }

  #vm: VirtualMachine;
  #options: ResolvedSandboxOptions;
  #socketDir: string;
  #socketPath: string;
  #crash: KrunboxError | undefined;

  #release: () => void;

  private constructor(options: ResolvedSandboxOptions, volumes: ResolvedVolumes) {
    super();
    this.#options = options;
    // Named volumes stay marked in use (Volume.remove refuses) while we run.
    const holds = volumes.named.map((name) => Volume.hold(name));
    // ...and so does its image (removeImage refuses).
    if (options.imageDigest) holds.push(holdImage(options.imageDigest));
    this.#release = () => holds.splice(0).forEach((release) => release());
    // Short and private: Unix socket paths are limited to 107 bytes.
    this.#socketDir = fs.mkdtempSync(path.join(os.tmpdir(), "krunbox-sb-"));
    this.#socketPath = path.join(this.#socketDir, "agent.sock");
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
        command: [],
        agentSocketPath: this.#socketPath,
        shares: volumes.shares,
        tmpfs: volumes.tmpfs,
      });
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
        this.#crash = new SandboxCrashedError(`the sandbox crashed: ${err.message}`, { cause: err });
        this.#setState("crashed");
        throw this.#crash;
      },
    );
    this.closed.catch(() => {});
  }

  /**
   * Boots a sandbox and resolves once it can run processes. Options are
   * validated first (ConfigError names the field); what only the guest can
   * tell (the workdir exists, the user is in /etc/passwd) is checked once
   * it is up (SandboxConfigError). Nothing is left behind if either fails.
   */
  static async create(options: SandboxOptions = {}): Promise<Sandbox> {
    const { resolved, volumes } = checkSandboxOptions(options);
    const image = resolved.image;
    if (image && typeof image === "object" && "dir" in image) {
      const dir = path.resolve(image.dir);
      if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory())
        throw new ConfigError("image.dir", `image.dir: root folder ${dir} does not exist`);
      resolved.root = dir;
    } else if (image) {
      // An OCI image: its config's Env, WorkingDir and User become defaults.
      const spec = typeof image === "string" ? { ref: image } : image;
      const pulled = await pullImage(spec.ref, spec);
      resolved.root = pulled.rootfs;
      resolved.imageDigest = pulled.digest;
      const imageEnv = Object.fromEntries(pulled.config.env.map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)]));
      resolved.env = { ...imageEnv, ...resolved.env };
      if (options.workdir === undefined && pulled.config.workingDir) resolved.workdir = pulled.config.workingDir;
      resolved.user ??= pulled.config.user;
    }
    const sb = new Sandbox(resolved, await resolveVolumes(volumes));
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
    const check = new SandboxProcess(
      this.#socketPath,
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
    if (this.state === state) return;
    this.state = state;
    this.emit("state", state);
  }

  #cleanup() {
    this.#release();
    fs.rmSync(this.#socketDir, { recursive: true, force: true });
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
   * `stdin`; a string or Buffer is written and closed.
   */
  spawn(command: string, args: string[] = [], options: ExecOptions = {}): SandboxProcess {
    return this.#spawn(command, args, parseOptions(execOptionsSchema, options, "options"));
  }

  #spawn(command: string, args: string[], o: ParsedExecOptions): SandboxProcess {
    const argv = checkArgv(command, args);
    if (this.state !== "running") throw new SandboxStoppedError(`cannot run ${command}: the sandbox is ${this.state}`);
    const env = { ...this.#options.env, ...o.env };
    const proc = new SandboxProcess(
      this.#socketPath,
      {
        argv,
        env: Object.entries(env).map(([k, v]) => `${k}=${v}`),
        cwd: o.cwd ?? this.#options.workdir,
        user: o.user ?? this.#options.user ?? "",
        timeoutMs: o.timeoutMs ?? 0,
        stdin: o.stdin !== undefined && o.stdin !== "ignore",
        signal: o.signal,
      },
      this.#sandboxGone,
      this.#whyClosed,
    );
    if (proc.stdin && o.stdin !== "pipe") proc.stdin.end(Buffer.from(o.stdin as string | Uint8Array));
    return proc;
  }

  /**
   * Runs a process to completion. A non-zero exit is a result; a timeout,
   * an abort or a lost sandbox reject with a typed error (the process is
   * killed in the guest).
   */
  exec(command: string, args?: string[], options?: ExecOptions & { encoding?: "utf8" }): Promise<ExecResult<string>>;
  exec(command: string, args: string[], options: ExecOptions & { encoding: "buffer" }): Promise<ExecResult<Buffer>>;
  async exec(command: string, args: string[] = [], options: ExecOptions = {}): Promise<ExecResult<string | Buffer>> {
    const o = parseOptions(execOptionsSchema, options, "options");
    const proc = this.#spawn(command, args, o);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let size = 0;
    const collect = (into: Buffer[]) => (chunk: Buffer) => {
      size += chunk.length;
      if (size > o.maxBufferBytes) {
        proc.kill("SIGKILL");
        return;
      }
      into.push(chunk);
    };
    proc.stdout.on("data", collect(out));
    proc.stderr.on("data", collect(err));
    const exit = await proc.exited;
    const decode = (b: Buffer[]) => (o.encoding === "buffer" ? Buffer.concat(b) : Buffer.concat(b).toString("utf8"));
    if (exit.timedOut)
      throw new ExecTimeoutError(`${command} ran past timeoutMs (${o.timeoutMs} ms); its process group was killed`, decode(out), decode(err));
    if (size > o.maxBufferBytes)
      throw new ExecFailedError(`${command} wrote more than maxBufferBytes (${o.maxBufferBytes}); it was killed`);
    return { ...exit, stdout: decode(out), stderr: decode(err) };
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
