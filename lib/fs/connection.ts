// One connection to the guest agent's file service (a worker in the guest,
// running as the sandbox's user): frames in order, with backpressure both
// ways. The guest is hostile: frame lengths are bounded by the decoder, and
// at most a few MiB of frames wait here before the socket is paused.
import net from "node:net";
import { AgentProtocolError, ConfigError, KrunboxError } from "../errors.js";
import { encodeFrame, FrameDecoder, parseJsonFrame } from "../sandbox/protocol.js";
import { FS_PROTOCOL_VERSION, FsFrame } from "./protocol.js";

export interface Frame {
  type: number;
  payload: Buffer;
}

// Frames waiting for the reader: past HIGH bytes the socket pauses (the
// guest then blocks on vsock credit), below LOW it resumes.
const HIGH = 4 << 20;
const LOW = 1 << 20;

export class FsConnection {
  #socket: net.Socket;
  #decoder = new FrameDecoder();
  #frames: Frame[] = [];
  #queued = 0;
  #waiter: { resolve: (f: Frame) => void; reject: (err: Error) => void } | undefined;
  #closed: Promise<Error> | undefined;

  private constructor(socket: net.Socket, whyClosed: () => Promise<KrunboxError>) {
    this.#socket = socket;
    socket.on("data", (chunk: Buffer) => {
      let frames: Frame[];
      try {
        frames = this.#decoder.push(chunk);
      } catch (err) {
        this.#end(Promise.resolve(err as Error));
        return;
      }
      for (const f of frames) {
        const w = this.#waiter;
        this.#waiter = undefined;
        if (w) w.resolve(f);
        else {
          this.#frames.push(f);
          this.#queued += f.payload.length;
        }
      }
      if (this.#queued > HIGH) socket.pause();
    });
    socket.on("error", () => {}); // "close" follows
    socket.on("close", () => {
      const pending = this.#decoder.pending;
      this.#end(pending ? Promise.resolve(new AgentProtocolError(`the guest agent's stream ended inside a frame (${pending} bytes)`)) : whyClosed());
    });
  }

  /** Connects and says HELLO; the guest worker then runs as `user` ("" for the image's). */
  static async open(socketPath: string, user: string, whyClosed: () => Promise<KrunboxError>): Promise<FsConnection> {
    const c = new FsConnection(net.createConnection(socketPath), whyClosed);
    c.send(FsFrame.Hello, JSON.stringify({ v: FS_PROTOCOL_VERSION, user }));
    const f = await c.next();
    if (f.type === FsFrame.Ok) return c;
    c.close();
    if (f.type !== FsFrame.Error) throw new AgentProtocolError(`the guest agent answered HELLO with frame type ${f.type}`);
    const message = parseJsonFrame("ERROR", f.payload).message;
    throw new ConfigError("user", `user: ${typeof message === "string" ? message.slice(0, 1000) : "the guest agent refused it"}`);
  }

  #end(why: Promise<Error>) {
    if (this.#closed) return;
    this.#closed = why;
    this.#socket.destroy();
    const w = this.#waiter;
    this.#waiter = undefined;
    if (w) void why.then((err) => w.reject(err));
  }

  get open(): boolean {
    return !this.#closed;
  }

  /** The next frame; rejects (with why) once the connection is gone and nothing is left. */
  next(): Promise<Frame> {
    const f = this.#frames.shift();
    if (f) {
      this.#queued -= f.payload.length;
      if (this.#queued < LOW && this.#socket.isPaused()) this.#socket.resume();
      return Promise.resolve(f);
    }
    if (this.#closed) return this.#closed.then((err) => Promise.reject(err));
    return new Promise((resolve, reject) => (this.#waiter = { resolve, reject }));
  }

  /** Queues a frame; false when the socket wants the caller to wait for `drained()`. */
  send(type: FsFrame, payload: Buffer | string = Buffer.alloc(0)): boolean {
    if (this.#closed) return true; // next() reports why
    return this.#socket.write(encodeFrame(type, payload));
  }

  /** Resolves once what was sent has left (or the connection is gone). */
  drained(): Promise<void> {
    if (this.#closed || !this.#socket.writableNeedDrain) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        this.#socket.off("drain", done).off("close", done);
        resolve();
      };
      this.#socket.on("drain", done).on("close", done);
    });
  }

  /** send() then, if needed, drained(). */
  async write(type: FsFrame, payload?: Buffer | string): Promise<void> {
    if (!this.send(type, payload)) await this.drained();
  }

  /** An idle connection must not keep Node running. */
  ref(): void {
    this.#socket.ref();
  }
  unref(): void {
    this.#socket.unref();
  }

  close(): void {
    this.#end(Promise.resolve(new KrunboxError("ERR_KRUNBOX_FS_CLOSED", "the file connection was closed")));
  }
}
