// A hostile agent against the exec client: thousands of random and
// adversarial frame sequences (frames after EXIT or ERROR, malformed JSON,
// bad lengths, truncation, garbage, resets) cut into random chunks, while
// the client kills, resizes, writes stdin, aborts and drops its streams at
// random. All cases share one channel, so connections that ended an exec
// in step carry later cases (and whatever the agent sends after EXIT lands
// on them). Nothing may throw outside the process's own promise and
// streams, and every `exited` must settle. The seed is fixed: a failure
// names its case.
import net from "node:net";
import path from "node:path";
import { finished } from "node:stream/promises";
import { afterAll, beforeAll, expect, it } from "vitest";
import { KrunboxError, SandboxStoppedError } from "../lib/index.js";
import { ExecChannel } from "../lib/sandbox/channel.js";
import { SandboxProcess } from "../lib/sandbox/process.js";
import { encodeFrame, Frame, FrameDecoder } from "../lib/sandbox/protocol.js";
import { tempDir } from "./helpers.js";

const SEED = 0x6b72756e;
const CASES = 3000;
const PARALLEL = 48;

// mulberry32: small, fast and the same everywhere.
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Script {
  pieces: string[]; // what was sent, for the failure message
  bytes: Buffer;
  ending: "end" | "destroy" | "stay-open";
  chunkSeed: number;
}

function makeScript(rand: () => number): Script {
  const int = (n: number) => Math.floor(rand() * n);
  const pick = <T>(xs: T[]): T => xs[int(xs.length)];
  const header = (len: number, type: number) => {
    const b = Buffer.alloc(5);
    b.writeUInt32LE(len >>> 0, 0);
    b.writeUInt8(type, 4);
    return b;
  };
  const exitJson = () => pick([{ code: int(256) }, { signal: 1 + int(64) }, { code: 0, timedOut: true }, { code: "x" }, {}, { signal: null }]);
  const pieces: [string, Buffer][] = [];
  const generators: (() => [string, Buffer])[] = [
    () => ["STARTED", encodeFrame(Frame.Started, JSON.stringify({ pid: pick([1 + int(1000), "7", null, -1]) }))],
    () => ["STDOUT", encodeFrame(Frame.Stdout, Buffer.alloc(pick([0, 1, 100, 4096, 70_000]), "o"))],
    () => ["STDERR", encodeFrame(Frame.Stderr, Buffer.alloc(pick([0, 1, 100, 4096]), "e"))],
    () => ["EXIT", encodeFrame(Frame.Exit, JSON.stringify(exitJson()))],
    () => ["ERROR", encodeFrame(Frame.Error, JSON.stringify({ message: pick(["no such user", 42, "x".repeat(10_000)]), field: pick(["user", "command", "x", 7, undefined]), errno: pick([2, 13, -1, 1e9, "ENOENT", undefined]) }))],
    () => ["bad JSON", encodeFrame(pick([Frame.Started, Frame.Exit, Frame.Error]), pick(["{", "[]", "null", "\u0000", "1e999"]))],
    () => ["unknown type", encodeFrame(pick([0, 6, 21, 255, Frame.Exec, Frame.Stdin, Frame.Signal, Frame.Resize]) as Frame, "?")],
    () => ["zero length", header(0, Frame.Stdout)],
    () => ["oversized length", header(pick([(1 << 20) + 1, 0xffffffff, 0x7fffffff]), Frame.Stdout)],
    () => ["truncated", Buffer.concat([header(1000, Frame.Stdout), Buffer.alloc(int(999), "t")])],
    () => ["garbage", Buffer.from(Array.from({ length: 1 + int(64) }, () => int(256)))],
  ];
  const adversarial: [string, Buffer][][] = [
    [generators[3](), generators[1]()], // output after EXIT
    [generators[4](), generators[1](), generators[3]()], // after ERROR
    [generators[3](), generators[3](), generators[0]()], // EXIT twice, STARTED late
    [generators[3](), generators[8]()], // a bad length after EXIT
    [generators[3](), generators[9]()], // EXIT, then a truncated frame
  ];
  if (rand() < 0.3) pieces.push(...pick(adversarial));
  for (let n = int(10); n > 0; n--) pieces.push(pick(generators)());
  if (rand() < 0.5) pieces.push(generators[3](), ...(rand() < 0.5 ? [pick(generators)()] : []));
  return {
    pieces: pieces.map(([name]) => name),
    bytes: Buffer.concat(pieces.map(([, b]) => b)),
    ending: pick(["end", "end", "destroy", "stay-open"]),
    chunkSeed: int(2 ** 31),
  };
}

const rand = random(SEED);
const scripts = Array.from({ length: CASES }, () => makeScript(rand));

let server: net.Server;
let channel: ExecChannel;
const connections = new Set<net.Socket>();
let accepted = 0;
beforeAll(async () => {
  const socketPath = path.join(tempDir(), "agent.sock");
  channel = new ExecChannel(socketPath);
  server = net.createServer((conn) => {
    accepted++;
    connections.add(conn);
    conn.on("close", () => connections.delete(conn));
    conn.on("error", () => {});
    const decoder = new FrameDecoder();
    // Every EXEC plays its case's script; stdin, signals, sizes are read and ignored.
    conn.on("data", (chunk) => {
      let frames;
      try {
        frames = decoder.push(chunk);
      } catch {
        return conn.destroy();
      }
      for (const exec of frames.filter((f) => f.type === Frame.Exec))
        void play(conn, scripts[Number(JSON.parse(exec.payload.toString()).argv[0])]);
    });
  });
  await new Promise<void>((r) => server.listen(socketPath, r));
});
afterAll(async () => {
  channel.close();
  connections.forEach((c) => c.destroy());
  await new Promise((r) => server.close(r));
});

// Sends the script in random pieces, with pauses that let the client act in between.
async function play(conn: net.Socket, script: Script) {
  const r = random(script.chunkSeed);
  for (let off = 0; off < script.bytes.length && !conn.destroyed; ) {
    const n = 1 + Math.floor(r() * (r() < 0.5 ? 16 : 80_000));
    conn.write(script.bytes.subarray(off, off + n));
    off += n;
    if (r() < 0.3) await new Promise((res) => setTimeout(res, Math.floor(r() * 3)));
  }
  if (script.ending === "end") conn.end();
  else if (script.ending === "destroy") conn.destroy();
  // "stay-open": only the client's abort (always set for these) ends it.
}

async function runCase(id: number): Promise<void> {
  const script = scripts[id];
  const r = random(script.chunkSeed ^ 0x5a5a5a5a);
  const abort = new AbortController();
  const tty = r() < 0.3 ? { cols: 80, rows: 24 } : undefined;
  const proc = new SandboxProcess(
    channel,
    { argv: [String(id)], env: [], cwd: "/", user: "", timeoutMs: 0, stdin: r() < 0.5, signal: abort.signal, tty },
    () => undefined,
    async () => new SandboxStoppedError("connection lost"),
  );
  proc.stdout.resume();
  proc.stderr.resume();
  const actions: (() => void)[] = [
    () => proc.kill("SIGTERM"),
    () => proc.kill(9),
    () => expect(() => proc.kill("SIGFOO" as NodeJS.Signals)).toThrow(KrunboxError),
    () => proc.stdin?.write(Buffer.alloc(1 + Math.floor(r() * 100_000))),
    () => proc.stdin?.end(),
    () => abort.abort(),
    () => proc.stdout.destroy(),
    () => tty && proc.resize(1 + Math.floor(r() * 500), 1 + Math.floor(r() * 200)),
  ];
  const timers = Array.from({ length: Math.floor(r() * 4) }, () =>
    setTimeout(actions[Math.floor(r() * actions.length)], Math.floor(r() * 5)),
  );
  // An agent that never ends the connection is ended by the abort.
  if (script.ending === "stay-open") timers.push(setTimeout(() => abort.abort(), 20));
  let outcome: unknown;
  const settled = await Promise.race([
    proc.exited.then(
      (exit) => (outcome = exit),
      (err) => (outcome = err),
    ).then(() => true),
    new Promise((res) => setTimeout(() => res(false), 10_000)),
  ]);
  timers.forEach(clearTimeout);
  const label = `case ${id} (seed ${SEED}): ${script.pieces.join(", ")}, then ${script.ending}`;
  expect(settled, `exited never settled in ${label}`).toBe(true);
  if (outcome instanceof Error) expect(outcome, label).toBeInstanceOf(KrunboxError);
  await finished(proc.stdout).catch(() => {});
  // Late actions on a finished process are harmless.
  proc.kill("SIGKILL");
  if (tty) proc.resize(100, 50);
  proc.stdin?.write("late");
}

it(`survives ${CASES} hostile agents without an uncaught error, and every exited settles`, async () => {
  const uncaught: unknown[] = [];
  const onError = (err: unknown) => uncaught.push(err);
  process.on("uncaughtException", onError);
  process.on("unhandledRejection", onError);
  try {
    let next = 0;
    await Promise.all(
      Array.from({ length: PARALLEL }, async () => {
        while (next < CASES) await runCase(next++);
      }),
    );
    // Stragglers (late frames, late stream errors) surface on later ticks.
    await new Promise((r) => setTimeout(r, 200));
  } finally {
    process.off("uncaughtException", onError);
    process.off("unhandledRejection", onError);
  }
  expect(uncaught).toEqual([]);
  // Cases that ended in step left their connection to later ones.
  expect(accepted).toBeLessThan(CASES);
}, 300_000);
