// One process in a sandbox: a vsock connection to the agent's exec service.
import net from "node:net";
import { PassThrough, Writable } from "node:stream";
import { constants as osConstants } from "node:os";
import {
  AgentProtocolError,
  ConfigError,
  ExecAbortedError,
  ExecFailedError,
  ExecTimeoutError,
  KrunboxError,
} from "../errors.js";
import { encodeFrame, execPayload, Frame, FrameDecoder, parseJsonFrame, type ExecRequest } from "./protocol.js";

export interface ProcessExit {
  /** Exit code, or null when a signal ended the process. */
  exitCode: number | null;
  /** Number of the signal that ended it, or null. */
  signal: number | null;
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

export function signalNumber(signal: NodeJS.Signals | number): number {
  const n = typeof signal === "number" ? signal : osConstants.signals[signal];
  if (!Number.isInteger(n) || n < 1 || n > 64)
    throw new ConfigError("signal", `signal: unknown signal ${String(signal)}; use a name such as "SIGTERM" or a number from 1 to 64`);
  return n;
}

/**
 * A process running in a sandbox. `stdout` and `stderr` are Readables,
 * `stdin` a Writable when requested; `exited` settles when it ends.
 */
export class SandboxProcess {
  readonly stdin: Writable | null;
  readonly stdout = new PassThrough();
  readonly stderr = new PassThrough();
  /** Resolves with the exit status; rejects with a typed KrunboxError. */
  readonly exited: Promise<ProcessExit>;
  /** The process id inside the guest, once started. */
  pid: number | undefined;

  #socket: net.Socket;
  #settled = false;
  #resolve!: (e: ProcessExit) => void;
  #reject!: (e: Error) => void;
  #timer: NodeJS.Timeout | undefined;

  #sandboxGone: () => KrunboxError | undefined;

  /**
   * @internal Use Sandbox.spawn(). `sandboxGone` says why the sandbox is
   * going away, if it is; `whyClosed` explains a connection that dropped.
   */
  constructor(
    socketPath: string,
    req: ProcessRequest,
    sandboxGone: () => KrunboxError | undefined,
    whyClosed: () => Promise<KrunboxError>,
  ) {
    this.#sandboxGone = sandboxGone;
    this.exited = new Promise((res, rej) => ((this.#resolve = res), (this.#reject = rej)));
    this.exited.catch(() => {}); // callers may only use the streams
    const socket = (this.#socket = net.createConnection(socketPath));
    const decoder = new FrameDecoder();

    this.stdin = req.stdin
      ? new Writable({
          write: (chunk: Buffer, _enc, done) => {
            for (let off = 0; off < chunk.length; off += STDIN_CHUNK)
              socket.write(encodeFrame(Frame.Stdin, chunk.subarray(off, off + STDIN_CHUNK)));
            // Backpressure: the next chunk waits until the socket drains.
            if (socket.writableNeedDrain) socket.once("drain", () => done());
            else done();
          },
          final: (done) => {
            if (!socket.destroyed) socket.write(encodeFrame(Frame.StdinEof));
            done();
          },
        })
      : null;
    this.stdin?.on("error", () => {}); // a write after exit is not the caller's crash

    socket.write(encodeFrame(Frame.Exec, execPayload(req)));
    if (!req.stdin) socket.write(encodeFrame(Frame.StdinEof));

    socket.on("data", (chunk: Buffer) => {
      // Once settled, whatever else the agent sends (a hostile one may keep
      // talking after EXIT) changes nothing.
      if (this.#settled) return;
      try {
        for (const { type, payload } of decoder.push(chunk)) {
          this.#onFrame(type, payload);
          if (this.#settled) break;
        }
      } catch (err) {
        this.#fail(err as Error);
      }
    });
    socket.on("error", () => {}); // "close" follows and says what happened
    socket.on("close", () => {
      if (this.#settled) return;
      if (decoder.pending) this.#fail(new AgentProtocolError(`the guest agent's stream ended inside a frame (${decoder.pending} bytes)`));
      else void whyClosed().then((err) => this.#fail(err));
    });
    // Backpressure from slow readers pauses the guest through vsock credit.
    for (const out of [this.stdout, this.stderr]) out.on("drain", () => socket.resume());

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
        if (typeof pid === "number") this.pid = pid;
        break;
      }
      case Frame.Stdout:
      case Frame.Stderr: {
        const out = type === Frame.Stdout ? this.stdout : this.stderr;
        // A caller may have destroyed the stream: its output is not wanted.
        if (!out.destroyed && !out.write(payload)) this.#socket.pause();
        break;
      }
      case Frame.Exit: {
        const j = parseJsonFrame("EXIT", payload);
        const exit: ProcessExit = {
          exitCode: typeof j.code === "number" ? j.code : null,
          signal: typeof j.signal === "number" ? j.signal : null,
          timedOut: j.timedOut === true,
        };
        if (exit.exitCode === null && exit.signal === null) throw new AgentProtocolError("the guest agent sent an EXIT frame without a status");
        // Killed because the sandbox is stopping: that is not a result.
        const gone = this.#sandboxGone();
        if (gone) this.#fail(gone);
        else this.#settle(() => this.#resolve(exit));
        break;
      }
      case Frame.Error: {
        const { message, field } = parseJsonFrame("ERROR", payload);
        this.#fail(
          new ExecFailedError(
            typeof message === "string" ? message.slice(0, 4096) : "the guest agent could not start the process",
            field === "user" || field === "cwd" ? field : undefined,
          ),
        );
        break;
      }
      default:
        throw new AgentProtocolError(`the guest agent sent an unknown frame type ${type}`);
    }
  }

  #settle(action: () => void) {
    if (this.#settled) return;
    this.#settled = true;
    clearTimeout(this.#timer);
    action();
    this.stdout.end();
    this.stderr.end();
    this.#socket.end();
    this.#socket.resume();
  }

  #fail(err: Error) {
    this.#settle(() => this.#reject(err));
    this.#socket.destroy();
  }

  /**
   * Sends a signal to the process's group in the guest. Harmless once the
   * process has exited; ConfigError for an unknown signal.
   */
  kill(signal: NodeJS.Signals | number = "SIGTERM"): void {
    const number = signalNumber(signal);
    if (this.#settled || this.#socket.destroyed) return;
    const payload = Buffer.alloc(4);
    payload.writeUInt32LE(number);
    this.#socket.write(encodeFrame(Frame.Signal, payload));
  }

  /**
   * @internal Ends the process now: its group is killed in the guest (also
   * by closing the connection) and `exited` rejects with `reason`.
   */
  abort(reason: Error): void {
    this.kill("SIGKILL");
    this.#fail(reason);
  }
}
