// A fake agent on the host side: the exec client must turn malformed,
// truncated and oversized frames into typed errors, and never hang.
import net from "node:net";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { AgentProtocolError, ExecTimeoutError, SandboxStoppedError } from "../lib/index.js";
import { ExecChannel } from "../lib/sandbox/channel.js";
import { SandboxProcess } from "../lib/sandbox/process.js";
import { Frame, FrameDecoder, MAX_FRAME, encodeFrame } from "../lib/sandbox/protocol.js";
import { tempDir, waitFor } from "./helpers.js";

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
    new ExecChannel(socketPath),
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

describe("connections kept between execs", () => {
  // An agent that answers every EXEC with `reply(n)` (n counts the EXECs), and counts connections.
  async function agent(reply: (n: number) => Buffer) {
    const socketPath = path.join(tempDir(), "agent.sock");
    const seen = { connections: 0, execs: 0, stdin: [] as string[] };
    server = net.createServer((conn) => {
      seen.connections++;
      conn.on("error", () => {});
      const decoder = new FrameDecoder();
      conn.on("data", (chunk) => {
        for (const f of decoder.push(chunk)) {
          if (f.type === Frame.Exec) conn.write(reply(seen.execs++));
          if (f.type === Frame.Stdin) seen.stdin.push(f.payload.toString());
        }
      });
    });
    await new Promise<void>((r) => server!.listen(socketPath, r));
    return { channel: new ExecChannel(socketPath), seen };
  }
  const run = (channel: ExecChannel, stdin = false) =>
    new SandboxProcess(channel, { argv: ["x"], env: [], cwd: "/", user: "", timeoutMs: 0, stdin }, () => undefined, async () => new SandboxStoppedError("lost"));
  const exit = (code: number) => encodeFrame(Frame.Exit, JSON.stringify({ code }));

  it("runs the next exec on the connection of one that ended in step, after EXIT or ERROR", async () => {
    const { channel, seen } = await agent((n) => (n === 1 ? encodeFrame(Frame.Error, '{"message":"no"}') : exit(n)));
    expect(await run(channel).exited).toMatchObject({ exitCode: 0 });
    await expect(run(channel).exited).rejects.toThrow("no");
    expect(await run(channel).exited).toMatchObject({ exitCode: 2 });
    expect(seen.connections).toBe(1);
    channel.close();
  });

  it("never lets a finished exec's stdin reach the next one", async () => {
    const { channel, seen } = await agent((n) => exit(n));
    const first = run(channel, true);
    await first.exited;
    first.stdin!.end("late");
    const second = run(channel, true);
    second.stdin!.end("mine");
    await second.exited;
    await waitFor("stdin at the agent", () => seen.stdin.length > 0);
    expect(seen.stdin).toEqual(["mine"]);
    expect(seen.connections).toBe(1);
    channel.close();
  });

  it("drops a connection the agent says more on after EXIT, or that an abort ended", async () => {
    const { channel, seen } = await agent((n) => Buffer.concat([exit(n), n === 0 ? encodeFrame(Frame.Stdout, "stray") : Buffer.alloc(0)]));
    expect(await run(channel).exited).toMatchObject({ exitCode: 0 });
    const second = run(channel);
    let out = "";
    second.stdout.on("data", (d) => (out += d));
    expect(await second.exited).toMatchObject({ exitCode: 1 });
    expect(out).toBe("");
    expect(seen.connections).toBe(2);
    const aborted = run(channel);
    aborted.abort(new Error("stop"));
    await expect(aborted.exited).rejects.toThrow("stop");
    await run(channel).exited;
    expect(seen.connections).toBe(3);
    channel.close();
  });
});
