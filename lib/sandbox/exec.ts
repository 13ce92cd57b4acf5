// exec(): a spawned process run to completion, its output collected.
import { StringDecoder } from "node:string_decoder";
import { ExecAbortedError, ExecTimeoutError, MaxBufferExceededError } from "../errors.js";
import type { ParsedExecOptions } from "./options.js";
import type { ProcessExit, SandboxProcess } from "./process.js";

export interface ExecResult<T extends string | Buffer = string> extends ProcessExit {
  stdout: T;
  stderr: T;
  /** The command line that ran, quoted as a POSIX shell would need it. */
  command: string;
  /** From the request to the process's exit, in milliseconds. */
  durationMs: number;
}

/** `argv` as one line a POSIX shell reads back as the same words. */
export function commandLine(argv: readonly string[]): string {
  return argv.map((word) => (/^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`)).join(" ");
}

/**
 * Collects `proc`'s output (at most maxBufferBytes, then it is killed) and
 * resolves with its exit. A non-zero exit is a result; a timeout, an abort
 * or a lost sandbox reject with a typed error carrying the output so far.
 */
export async function collect(proc: SandboxProcess, argv: readonly string[], o: ParsedExecOptions, started: number): Promise<ExecResult<string | Buffer>> {
  const command = commandLine(argv);
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const decode = (b: Buffer[]) => (o.encoding === "buffer" ? Buffer.concat(b) : Buffer.concat(b).toString("utf8"));
  let room = o.maxBufferBytes;
  const listen = (stream: NodeJS.ReadableStream, into: Buffer[], callback: ((chunk: string | Buffer) => void) | undefined) => {
    // Live output in whole characters: a UTF-8 sequence may span chunks.
    const text = o.encoding === "utf8" && callback ? new StringDecoder("utf8") : undefined;
    const deliver = (piece: string | Buffer) => {
      try {
        if (piece.length) callback!(piece);
      } catch (thrown) {
        // The caller's own error ends the exec.
        proc.abort(thrown instanceof Error ? thrown : new Error(String(thrown)));
      }
    };
    if (text) stream.on("end", () => deliver(text.end()));
    stream.on("data", (chunk: Buffer) => {
      if (callback) deliver(text ? text.write(chunk) : chunk);
      if (room === 0) return;
      into.push(chunk.subarray(0, room));
      if (chunk.length <= room) return void (room -= chunk.length);
      room = 0;
      proc.abort(new MaxBufferExceededError(`${command} wrote more than maxBufferBytes (${o.maxBufferBytes}); it was killed`, decode(out), decode(err)));
    });
  };
  listen(proc.stdout, out, o.onStdout);
  listen(proc.stderr, err, o.onStderr);
  let exit: ProcessExit;
  try {
    exit = await proc.exited;
  } catch (e) {
    // An exec that ends early keeps what it had printed.
    if (e instanceof ExecTimeoutError) throw new ExecTimeoutError(e.message, decode(out), decode(err));
    if (e instanceof ExecAbortedError) throw new ExecAbortedError(e.message, decode(out), decode(err), { cause: e.cause });
    throw e;
  }
  if (exit.timedOut)
    throw new ExecTimeoutError(`${command} ran past timeoutMs (${o.timeoutMs} ms); its process group was killed`, decode(out), decode(err));
  return { ...exit, stdout: decode(out), stderr: decode(err), command, durationMs: performance.now() - started };
}
