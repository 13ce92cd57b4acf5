// Connections to the guest agent's exec service, kept open between execs.
// Opening one costs more than starting a process under emulation (the
// runner's accept, vhost-device-vsock's CONNECT handshake with the guest,
// the agent's accept, and only then the first frame), so a process takes an
// idle connection and gives it back once its EXIT or ERROR arrived in step:
// a warm exec is one EXEC frame out and STARTED, output and EXIT back.
import net from "node:net";
import { AgentProtocolError } from "../errors.js";
import { FrameDecoder } from "./protocol.js";

/** What a process hears from its connection. */
export interface ConnectionUser {
  /** One frame from the agent; a throw ends the process with that error. */
  frame(type: number, payload: Buffer): void;
  /** The connection failed (`err`) or closed between frames (undefined). */
  ended(err: Error | undefined): void;
}

// Idle connections kept for the next execs; more (after a burst of
// concurrent ones) are closed as they come back.
const MAX_IDLE = 8;

export class ExecConnection {
  readonly #socket: net.Socket;
  readonly #decoder = new FrameDecoder();
  #user: ConnectionUser | undefined;
  #onClose: () => void;

  constructor(socketPath: string, onClose: (c: ExecConnection) => void) {
    this.#onClose = () => onClose(this);
    const socket = (this.#socket = net.createConnection(socketPath));
    socket.on("data", (chunk: Buffer) => this.#onData(chunk));
    socket.on("error", () => {}); // "close" follows and says what happened
    socket.on("close", () => {
      this.#onClose();
      const user = this.#user;
      this.#user = undefined;
      const pending = this.#decoder.pending;
      user?.ended(pending ? new AgentProtocolError(`the guest agent's stream ended inside a frame (${pending} bytes)`) : undefined);
    });
  }

  #onData(chunk: Buffer): void {
    const user = this.#user;
    // Between execs the agent has nothing to say: it is out of step.
    if (!user) return void this.#socket.destroy();
    let frames;
    try {
      frames = this.#decoder.push(chunk);
    } catch (err) {
      return this.#end(user, err as Error);
    }
    for (const { type, payload } of frames) {
      // Frames after the one that ended the exec belong to no one.
      if (this.#user !== user) return void this.#socket.destroy();
      try {
        user.frame(type, payload);
      } catch (err) {
        return this.#end(user, err as Error);
      }
    }
  }

  #end(user: ConnectionUser, err: Error): void {
    if (this.#user === user) this.#user = undefined;
    this.#socket.destroy();
    user.ended(err);
  }

  /** @internal The channel hands it to one process at a time. */
  attach(user: ConnectionUser): void {
    this.#user = user;
    this.#socket.ref();
  }

  /** Detaches its process; true if it can carry the next exec. */
  detach(): boolean {
    this.#user = undefined;
    this.#socket.resume();
    this.#socket.unref();
    return !this.#socket.destroyed && this.#decoder.pending === 0;
  }

  get destroyed(): boolean {
    return this.#socket.destroyed;
  }

  /** false: wait for drain(). */
  write(frame: Buffer): boolean {
    return this.#socket.destroyed || this.#socket.write(frame);
  }

  /** Calls `fn` once the socket drained or closed. */
  onceDrained(fn: () => void): void {
    const done = () => {
      this.#socket.off("drain", done).off("close", done);
      fn();
    };
    this.#socket.on("drain", done).on("close", done);
  }

  pause(): void {
    this.#socket.pause();
  }

  resume(): void {
    this.#socket.resume();
  }

  /** Closing the connection kills the process's group in the guest. */
  destroy(): void {
    this.#socket.destroy();
  }
}

/** A sandbox's connections to its agent's exec service. */
export class ExecChannel {
  readonly #socketPath: string;
  #idle: ExecConnection[] = [];

  constructor(socketPath: string) {
    this.#socketPath = socketPath;
  }

  /** An idle connection, or a new one. */
  take(user: ConnectionUser): ExecConnection {
    let c = this.#idle.pop();
    // One the agent spoke on while idle is destroyed before its "close" event.
    while (c?.destroyed) c = this.#idle.pop();
    c ??= new ExecConnection(this.#socketPath, (closed) => this.#forget(closed));
    c.attach(user);
    return c;
  }

  /** Back from a process: kept for the next exec if it is in step. */
  give(c: ExecConnection): void {
    if (c.detach() && this.#idle.length < MAX_IDLE) this.#idle.push(c);
    else c.destroy();
  }

  #forget(c: ExecConnection): void {
    const i = this.#idle.indexOf(c);
    if (i >= 0) this.#idle.splice(i, 1);
  }

  /** Closes the idle connections (the sandbox is stopping). */
  close(): void {
    for (const c of this.#idle.splice(0)) c.destroy();
  }
}
