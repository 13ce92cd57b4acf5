// A fake agent on the host side: the exec client must turn malformed,
// truncated and oversized frames into typed errors, and never hang.
import net from "node:net";
import path from "node:path";
import { afterEach, expect, it } from "vitest";
import { AgentProtocolError, ExecTimeoutError, SandboxStoppedError } from "../lib/index.js";
import { SandboxProcess } from "../lib/sandbox/process.js";
import { Frame, MAX_FRAME, encodeFrame } from "../lib/sandbox/protocol.js";
import { tempDir } from "./helpers.js";

let server: net.Server | undefined;
afterEach(() => server?.close());

/** Serves one connection: after the client's first frame, sends `reply` (then closes unless `keepOpen`). */
async function fakeAgent(reply: Buffer, keepOpen = false): Promise<string> {
  const socketPath = path.join(tempDir(), "agent.sock");
  server = net.createServer((conn) => {
    conn.once("data", () => (keepOpen ? conn.write(reply) : conn.end(reply)));
    conn.on("error", () => {});
  });
  await new Promise<void>((r) => server!.listen(socketPath, r));
  return socketPath;
}

function spawnAgainst(socketPath: string, timeoutMs = 0): SandboxProcess {
  return new SandboxProcess(
    socketPath,
    { argv: ["true"], env: [], cwd: "/", user: "", timeoutMs, stdin: false },
    () => undefined,
    async () => new SandboxStoppedError("connection lost"),
  );
}

const header = (len: number, type: number) => {
  const b = Buffer.alloc(5);
  b.writeUInt32LE(len, 0);
  b.writeUInt8(type, 4);
  return b;
};

it.each([
  ["an oversized length", header(0xffffffff, Frame.Stdout), /frame of 4294967295 bytes/],
  ["a length just past the limit", header(MAX_FRAME + 1, Frame.Stdout), /allowed: 1 to/],
  ["a zero length", header(0, Frame.Stdout), /frame of 0 bytes/],
  ["a truncated frame", Buffer.concat([header(100, Frame.Stdout), Buffer.from("only a little")]), /ended inside a frame/],
  ["malformed EXIT JSON", encodeFrame(Frame.Exit, "{not json"), /malformed EXIT/],
  ["an EXIT that is not an object", encodeFrame(Frame.Exit, "[1,2]"), /malformed EXIT/],
  ["an EXIT without a status", encodeFrame(Frame.Exit, "{}"), /without a status/],
  ["an unknown frame type", encodeFrame(99 as Frame, "x"), /unknown frame type 99/],
  ["garbage", Buffer.from("HTTP/1.1 200 OK\r\n\r\n"), /frame of/],
])("rejects %s with AgentProtocolError", async (_name, reply, message) => {
  const proc = spawnAgainst(await fakeAgent(reply));
  const err = await proc.exited.catch((e) => e);
  expect(err).toBeInstanceOf(AgentProtocolError);
  expect(err.message).toMatch(message);
});

it("reports a connection that closes between frames as a lost sandbox", async () => {
  const proc = spawnAgainst(await fakeAgent(encodeFrame(Frame.Stdout, "partial output")));
  await expect(proc.exited).rejects.toBeInstanceOf(SandboxStoppedError);
});

it("does not hang on an agent that never answers", async () => {
  const proc = spawnAgainst(await fakeAgent(Buffer.alloc(0), true), 100);
  await expect(proc.exited).rejects.toBeInstanceOf(ExecTimeoutError);
}, 15_000);
