// The sb.fs client against a fake, hostile guest agent (no VM): whatever
// frames arrive, every call settles with a typed error, memory stays
// bounded, and nothing is written outside a copyOut's destination.
import crypto from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { afterEach, expect, it } from "vitest";
import { AgentProtocolError, FsError, FsLimitError, KrunboxError, PathEscapeError, SandboxFs, SandboxStoppedError } from "../lib/index.js";
import { FsFrame } from "../lib/fs/protocol.js";
import { encodeFrame, FrameDecoder } from "../lib/sandbox/protocol.js";
import { tempDir } from "./helpers.js";

type Send = (type: number, payload?: Buffer | string | object) => void;
const servers: net.Server[] = [];
afterEach(() => servers.splice(0).forEach((s) => s.close()));

/** A fake agent: says OK to HELLO, then lets `onRequest` answer each REQUEST. */
async function fakeAgent(onRequest: (req: Record<string, unknown>, send: Send, socket: net.Socket) => void): Promise<SandboxFs> {
  const socketPath = path.join(tempDir(), "fs.sock");
  const server = net.createServer((socket) => {
    const decoder = new FrameDecoder();
    const send: Send = (type, payload = "") =>
      socket.write(encodeFrame(type, Buffer.isBuffer(payload) || typeof payload === "string" ? payload : JSON.stringify(payload)));
    socket.on("error", () => {});
    socket.on("data", (chunk) => {
      for (const f of decoder.push(chunk)) {
        if (f.type === FsFrame.Hello) send(FsFrame.Ok, {});
        else if (f.type === FsFrame.Request) onRequest(JSON.parse(f.payload.toString()), send, socket);
      }
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(socketPath, r));
  return new SandboxFs({
    socketPath,
    user: "",
    workdir: "/",
    shares: [],
    gone: () => undefined,
    whyClosed: async () => new SandboxStoppedError("the connection to the guest agent was lost"),
  });
}

it("bounds a file that never ends", async () => {
  const sfs = await fakeAgent((_req, send, socket) => {
    send(FsFrame.Ok, { size: 0 });
    const chunk = Buffer.alloc(256 << 10);
    const pump = () => {
      while (!socket.destroyed && socket.write(encodeFrame(FsFrame.Data, chunk)));
      if (!socket.destroyed) socket.once("drain", pump);
    };
    pump();
  });
  await expect(sfs.readFile("/x", { maxBytes: 4 << 20 })).rejects.toBeInstanceOf(FsLimitError);
});

it("turns malformed frames into AgentProtocolError", async () => {
  const cases: ((send: Send, socket: net.Socket) => void)[] = [
    (_send, socket) => socket.write(Buffer.from([0xff, 0xff, 0xff, 0x7f, FsFrame.Ok])), // a 2 GiB frame
    (send) => send(FsFrame.Ok, "not json"),
    (send) => send(FsFrame.Entries, [["a", "bogus-type"]]),
    (send) => send(FsFrame.Event, {}),
    (_send, socket) => socket.end(Buffer.from([10, 0, 0, 0, FsFrame.Ok, 1])), // ends inside a frame
  ];
  for (const reply of cases) {
    const sfs = await fakeAgent((_req, send, socket) => reply(send, socket));
    await expect(sfs.readdir("/")).rejects.toBeInstanceOf(AgentProtocolError);
  }
});

it("maps the guest's errno, whatever it sends", async () => {
  const errnos: unknown[] = [2, 99999, -1, "ENOENT", null];
  const codes: string[] = [];
  for (const errno of errnos) {
    const sfs = await fakeAgent((_req, send) => send(FsFrame.Error, { errno, syscall: "x".repeat(10_000), path: "/guest" }));
    const err = await sfs.stat("/mine").catch((e) => e);
    expect(err).toBeInstanceOf(FsError);
    expect(err.path).toBe("/mine");
    expect(err.syscall.length).toBeLessThanOrEqual(64);
    codes.push(err.code);
  }
  expect(codes).toEqual(["ENOENT", "EIO", "EIO", "EIO", "EIO"]);
});

it("writes nothing outside a copyOut destination, whatever the entries say", async () => {
  const outside = tempDir();
  const attacks: object[][] = [
    [{ path: "../escape", type: "file", mode: 0o644 }],
    [{ path: "/abs", type: "file", mode: 0o644 }],
    [{ path: "l", type: "symlink", mode: 0o777, target: outside }, { path: "l/planted", type: "file", mode: 0o644 }],
    [{ path: "d/../../x", type: "directory", mode: 0o755 }],
  ];
  for (const entries of attacks) {
    const sfs = await fakeAgent((_req, send) => {
      send(FsFrame.Entry, { path: "", type: "directory", mode: 0o755 });
      for (const e of entries) {
        send(FsFrame.Entry, e);
        if ((e as { type: string }).type === "file") send(FsFrame.Data, "x"), send(FsFrame.End);
      }
      send(FsFrame.Done);
    });
    const dest = path.join(tempDir(), "out");
    await expect(sfs.copyOut("/tree", dest)).rejects.toBeInstanceOf(PathEscapeError);
    expect(fs.readdirSync(path.dirname(dest))).toEqual(["out"]);
  }
  expect(fs.readdirSync(outside)).toEqual([]);
});

it("settles every call, whatever random frames arrive", async () => {
  let script: Buffer[] = [];
  const sfs = await fakeAgent((_req, _send, socket) => {
    for (const b of script) socket.write(b);
    socket.end();
  });
  const random = (n: number) => crypto.randomBytes(n);
  for (let i = 0; i < 300; i++) {
    script = Array.from({ length: 1 + (i % 4) }, () =>
      i % 3 === 0 ? random(1 + (i % 50)) : encodeFrame(1 + crypto.randomInt(12), i % 2 ? random(i % 40) : JSON.stringify({ size: i, errno: i })),
    );
    const ops = [() => sfs.stat("/x"), () => sfs.readdir("/x"), () => sfs.readFile("/x"), () => sfs.copyOut("/x", path.join(tempDir(), "o"))];
    const err = await ops[i % ops.length]().then(
      () => undefined,
      (e) => e,
    );
    if (err !== undefined) expect(err, `round ${i}`).toBeInstanceOf(KrunboxError);
  }
});
