// Host side of the agent's exec protocol; its C++ twin is
// src/common/exec_protocol.h (keep the two in step; it describes every
// frame). Frames of u32-LE length (type + payload), u8 type, payload; a
// connection runs one exec at a time, any number in sequence. The guest is
// hostile: every length is bounded before anything is buffered.
import { AgentProtocolError } from "../errors.js";

export const PROTOCOL_VERSION = 2;
export const MAX_FRAME = 1 << 20;

export enum Frame {
  Exec = 1,
  Stdin = 2,
  StdinEof = 3,
  Signal = 4,
  Resize = 5,
  Started = 16,
  Stdout = 17,
  Stderr = 18,
  Exit = 19,
  Error = 20,
}

export function encodeFrame(type: number, payload: Buffer | string = Buffer.alloc(0)): Buffer {
  const body = typeof payload === "string" ? Buffer.from(payload) : payload;
  const header = Buffer.alloc(5);
  header.writeUInt32LE(body.length + 1, 0);
  header.writeUInt8(type, 4);
  return Buffer.concat([header, body]);
}

export interface ExecRequest {
  argv: string[];
  /** KEY=VALUE */
  env: string[];
  cwd: string;
  /** "", a name, "uid" or "uid:gid". */
  user: string;
  /** 0: none. */
  timeoutMs: number;
  /** Only check that the user and cwd resolve in the guest; start nothing (exits 0). */
  checkOnly?: boolean;
  /** A pseudo-terminal of this size for stdin, stdout and stderr. */
  tty?: { cols: number; rows: number };
}

/** The EXEC frame's payload; with its type byte it must fit in MAX_FRAME. */
export function execPayload(r: ExecRequest): string {
  return JSON.stringify({
    v: PROTOCOL_VERSION,
    argv: r.argv,
    env: r.env,
    cwd: r.cwd,
    user: r.user,
    timeoutMs: r.timeoutMs,
    ...(r.checkOnly && { checkOnly: true }),
    ...(r.tty && { tty: r.tty }),
  });
}

/** Splits a byte stream into frames; throws AgentProtocolError on a bad length. */
export class FrameDecoder {
  #buf: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): { type: number; payload: Buffer }[] {
    this.#buf = this.#buf.length ? Buffer.concat([this.#buf, chunk]) : chunk;
    const frames: { type: number; payload: Buffer }[] = [];
    while (this.#buf.length >= 4) {
      const len = this.#buf.readUInt32LE(0);
      if (len === 0 || len > MAX_FRAME)
        throw new AgentProtocolError(`the guest agent sent a frame of ${len} bytes (allowed: 1 to ${MAX_FRAME})`);
      if (this.#buf.length < 4 + len) break;
      frames.push({ type: this.#buf.readUInt8(4), payload: this.#buf.subarray(5, 4 + len) });
      this.#buf = this.#buf.subarray(4 + len);
    }
    return frames;
  }

  /** Bytes of an incomplete frame left when the stream ended. */
  get pending(): number {
    return this.#buf.length;
  }
}

/** Parses a JSON frame payload into an object, or throws AgentProtocolError. */
export function parseJsonFrame(what: string, payload: Buffer): Record<string, unknown> {
  try {
    const value: unknown = JSON.parse(payload.toString("utf8"));
    if (value && typeof value === "object" && !Array.isArray(value)) return value as Record<string, unknown>;
  } catch {
    // reported below
  }
  throw new AgentProtocolError(`the guest agent sent a malformed ${what} frame`);
}
