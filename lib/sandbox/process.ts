// One process in a sandbox, on a connection to the agent's exec service.
import { constants as osConstants } from "node:os";
import { PassThrough, Writable } from "node:stream";
import {
  AgentProtocolError,
  ConfigError,
  ExecAbortedError,
  ExecFailedError,
  ExecTimeoutError,
  KrunboxError,
} from "../errors.js";
import type { ExecChannel, ExecConnection } from "./channel.js";
import { encodeFrame, execPayload, Frame, parseJsonFrame, type ExecRequest } from "./protocol.js";

/** A signal's name: Node's, "SIGRTMIN+n" for a real-time signal, "SIG32" and "SIG33" for glibc's own. */
export type SignalName = NodeJS.Signals | `SIGRTMIN+${number}` | `SIG${number}`;

export interface ProcessExit {
  /** Exit code, or null when a signal ended the process. */
  exitCode: number | null;
  /** The signal that ended it ("SIGKILL"), or null. */
  signal: SignalName | null;
  /** The guest killed it because it ran past timeoutMs. */
  timedOut: boolean;
}

export interface ProcessRequest extends ExecRequest {
  stdin: boolean;
  signal?: AbortSignal;
}

const STDIN_CHUNK = 64 * 1024;
// After the guest's own timeout, how long the host waits for its verdict.
const TIMEOUT_BACKSTOP_MS = 5000;
// glibc's SIGRTMIN (the kernel's 32 and 33 are its own).
const SIGRTMIN = 34;
const signalNames = new Map(Object.entries(osConstants.signals).map(([name, n]) => [n, name as NodeJS.Signals]));
const errnoNames = new Map(Object.entries(osConstants.errno).map(([name, n]) => [n, name]));

export function signalNumber(signal: SignalName | number): number {
  const rt = typeof signal === "string" ? /^SIG(RTMIN\+)?(\d+)$/.exec(signal) : null;
  const n = typeof signal === "number" ? signal : rt ? (rt[1] ? SIGRTMIN : 0) + Number(rt[2]) : osConstants.signals[signal as NodeJS.Signals];
  if (!Number.isInteger(n) || n < 1 || n > 64)
    throw new ConfigError("signal", `signal: unknown signal ${String(signal)}; use a name such as "SIGTERM" or a number from 1 to 64`);
  return n;
}

/** The name of signal `n` (1 to 64) as the guest's Linux numbers it. */
export function signalName(n: number): SignalName {
  return signalNames.get(n) ?? (n >= SIGRTMIN ? `SIGRTMIN+${n - SIGRTMIN}` : `SIG${n}`);
}

/** 1 to 65535 columns or rows; ConfigError naming `field` otherwise. */
export function checkTerminalSize(value: unknown, field: string): number {
  if (!Number.isInteger(value) || (value as number) < 1 || (value as number) > 65535)
    throw new ConfigError(field, `${field}: must be a whole number from 1 to 65535`);
  return value as number;
}

function u16Pair(a: number, b: number): Buffer {
  const payload = Buffer.alloc(4);
  payload.writeUInt16LE(a, 0);
  payload.writeUInt16LE(b, 2);
  return payload;
}

/**
 * A process running in a sandbox. `stdout` and `stderr` are Readables
 * (with a `tty`, stdout carries the terminal's output and stderr stays
 * empty), `stdin` a Writable when requested; `exited` settles when it ends.
 * If it cannot start or the sandbox goes away, `exited` rejects with a
 * typed KrunboxError and both output streams end with that error.
 */
export class SandboxProcess {
  readonly stdin: Writable | null;
  readonly stdout = new PassThrough();
  readonly stderr = new PassThrough();
  /** Resolves with the exit status; rejects with a typed KrunboxError. */
  readonly exited: Promise<ProcessExit>;
  /** The process id inside the guest, once it started. */
  get pid(): number | undefined {
    return this.#pid;
  }

  #pid: number | undefined;
  #conn: ExecConnection;
  #channel: ExecChannel;
  #tty: boolean;
  #settled = false;
  #resolve!: (e: ProcessExit) => void;
  #reject!: (e: Error) => void;
  #timer: NodeJS.Timeout | undefined;
  #sandboxGone: () => KrunboxError | undefined;
  #whyClosed: () => Promise<KrunboxError>;

  /**
   * @internal Use Sandbox.spawn(). `sandboxGone` says why the sandbox is
   * going away, if it is; `whyClosed` explains a connection that dropped.
   */
  constructor(
    channel: ExecChannel,
    req: ProcessRequest,
    sandboxGone: () => KrunboxError | undefined,
    whyClosed: () => Promise<KrunboxError>,
  ) {
    this.#channel = channel;
    this.#sandboxGone = sandboxGone;
    this.#whyClosed = whyClosed;
    this.#tty = req.tty !== undefined;
    this.exited = new Promise((res, rej) => ((this.#resolve = res), (this.#reject = rej)));
    this.exited.catch(() => {}); // callers may only use the streams
    // ...or only `exited`: a failure must not crash them as an unheard stream error.
    for (const out of [this.stdout, this.stderr]) out.on("error", () => {});
    const conn = (this.#conn = channel.take({
      frame: (type, payload) => this.#onFrame(type, payload),
      ended: (err) => {
        if (err) this.#fail(err);
        else void this.#whyClosed().then((why) => this.#fail(why));
      },
    }));

    this.stdin = req.stdin
      ? new Writable({
          write: (chunk: Buffer, _enc, done) => {
            // Once the process has ended, the connection carries the next one.
            if (this.#settled) return done();
            let flowing = true;
            for (let off = 0; off < chunk.length; off += STDIN_CHUNK)
              flowing = conn.write(encodeFrame(Frame.Stdin, chunk.subarray(off, off + STDIN_CHUNK)));
            // Backpressure: the next chunk waits until the socket drains.
            if (flowing) done();
            else conn.onceDrained(() => done());
          },
          final: (done) => {
            if (!this.#settled) conn.write(encodeFrame(Frame.StdinEof));
            done();
          },
        })
      : null;
    this.stdin?.on("error", () => {}); // a write after exit is not the caller's crash

    const exec = encodeFrame(Frame.Exec, execPayload(req));
    conn.write(req.stdin ? exec : Buffer.concat([exec, encodeFrame(Frame.StdinEof)]));
    // Backpressure from slow readers pauses the guest through vsock credit.
    for (const out of [this.stdout, this.stderr]) out.on("drain", () => !this.#settled && conn.resume());

    if (req.timeoutMs > 0)
      this.#timer = setTimeout(
        () => this.abort(new ExecTimeoutError(`the process ran past timeoutMs (${req.timeoutMs} ms) and did not report back`, "", "")),
        req.timeoutMs + TIMEOUT_BACKSTOP_MS,
      );
    if (req.signal) {
      const onAbort = () =>
        this.abort(new ExecAbortedError("the process was aborted; it was killed in the guest", "", "", { cause: req.signal!.reason }));
      if (req.signal.aborted) onAbort();
      else req.signal.addEventListener("abort", onAbort, { once: true });
      this.exited.finally(() => req.signal!.removeEventListener("abort", onAbort)).catch(() => {});
    }
  }

  #onFrame(type: number, payload: Buffer) {
    switch (type) {
      case Frame.Started: {
        const pid = parseJsonFrame("STARTED", payload).pid;
        if (typeof pid === "number") this.#pid = pid;
        break;
      }
      case Frame.Stdout:
      case Frame.Stderr: {
        const out = type === Frame.Stdout ? this.stdout : this.stderr;
        // A caller may have destroyed the stream: its output is not wanted.
        if (!out.destroyed && !out.write(payload)) this.#conn.pause();
        break;
      }
      case Frame.Exit: {
        const j = parseJsonFrame("EXIT", payload);
        const signal = typeof j.signal === "number" && j.signal >= 1 && j.signal <= 64 ? signalName(j.signal) : null;
        const exit: ProcessExit = { exitCode: typeof j.code === "number" ? j.code : null, signal, timedOut: j.timedOut === true };
        if (exit.exitCode === null && exit.signal === null) throw new AgentProtocolError("the guest agent sent an EXIT frame without a status");
        // Killed because the sandbox is stopping: that is not a result.
        const gone = this.#sandboxGone();
        if (gone) return this.#fail(gone);
        this.#settle(() => this.#resolve(exit));
        this.stdout.end();
        this.stderr.end();
        break;
      }
      case Frame.Error: {
        const { message, field, errno } = parseJsonFrame("ERROR", payload);
        const err = new ExecFailedError(
          typeof message === "string" ? message.slice(0, 4096) : "the guest agent could not start the process",
          field === "user" || field === "cwd" || field === "command" ? field : undefined,
          typeof errno === "number" ? errnoNames.get(errno) : undefined,
        );
        this.#settle(() => this.#reject(err));
        this.#endStreams(err);
        break;
      }
      default:
        throw new AgentProtocolError(`the guest agent sent an unknown frame type ${type}`);
    }
  }

  // EXIT and ERROR leave the connection in step for the next exec.
  #settle(action: () => void, reusable = true) {
    if (this.#settled) return;
    this.#settled = true;
    clearTimeout(this.#timer);
    action();
    if (reusable) this.#channel.give(this.#conn);
    else this.#conn.destroy();
  }

  #endStreams(err: Error) {
    for (const out of [this.stdout, this.stderr]) if (!out.destroyed) out.destroy(err);
  }

  #fail(err: Error) {
    if (this.#settled) return;
    this.#settle(() => this.#reject(err), false);
    this.#endStreams(err);
  }

  /**
   * Sends a signal to the process's group in the guest. Harmless once the
   * process has exited; ConfigError for an unknown signal.
   */
  kill(signal: SignalName | number = "SIGTERM"): void {
    const number = signalNumber(signal);
    if (this.#settled) return;
    const payload = Buffer.alloc(4);
    payload.writeUInt32LE(number);
    this.#conn.write(encodeFrame(Frame.Signal, payload));
  }

  /**
   * Resizes the process's terminal (spawned with `tty`); its foreground
   * job gets SIGWINCH. Harmless once the process has exited.
   */
  resize(cols: number, rows: number): void {
    if (!this.#tty) throw new ConfigError("tty", "resize: the process has no terminal; spawn it with { tty: { cols, rows } }");
    const payload = u16Pair(checkTerminalSize(cols, "cols"), checkTerminalSize(rows, "rows"));
    if (!this.#settled) this.#conn.write(encodeFrame(Frame.Resize, payload));
  }

  /**
   * @internal Ends the process now: its group is killed in the guest (by
   * closing the connection) and `exited` rejects with `reason`.
   */
  abort(reason: Error): void {
    this.#fail(reason);
  }
}
