// A hostile guest (and a careless host program) against krunbox, on real
// VMs: ids that would wrap to root, output past maxBufferBytes, kill() after
// exit, 1 ms timeouts, requests over the frame limit, crash messages the
// guest writes.
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ConfigError,
  ExecAbortedError,
  ExecFailedError,
  MaxBufferExceededError,
  Sandbox,
  SandboxCrashedError,
  SandboxStoppedError,
  VirtualMachine,
} from "../lib/index.js";
import { ExecChannel } from "../lib/sandbox/channel.js";
import { SandboxProcess } from "../lib/sandbox/process.js";
import { tempDir, vmProcesses } from "./helpers.js";

let sb: Sandbox;
beforeAll(async () => {
  sb = await Sandbox.create();
});
afterAll(() => sb?.stop());

// Polls the guest until `file` exists there.
async function guestFile(file: string): Promise<void> {
  while ((await sb.exec("sh", ["-c", `test -e ${file} && echo yes || true`])).stdout !== "yes\n")
    await new Promise((r) => setTimeout(r, 50));
}

describe("numeric users", () => {
  const wrapping = ["4294967296", "8589934592", "65534:4294967296", "4294967295", "-1"];

  it("are refused above 4294967294 (and negative) before anything runs", async () => {
    for (const user of wrapping) await expect(sb.exec("id", [], { user }), user).rejects.toMatchObject({ field: "options.user" });
    expect((await sb.exec("id", ["-u"], { user: "4294967294" })).stdout).toBe("4294967294\n");
  });

  it("are refused by the guest agent too, never run as root", async () => {
    // Past the host's validation: the protocol client straight to the agent.
    const socketPath = path.join(tempDir(), "agent.sock");
    await using vm = VirtualMachine.start({ command: [], agentSocketPath: socketPath });
    await vm.ready;
    for (const user of wrapping.slice(0, 4)) {
      const proc = new SandboxProcess(
        new ExecChannel(socketPath),
        { argv: ["sh", "-c", "id -u; id -g"], env: [], cwd: "/", user, timeoutMs: 0, stdin: false },
        () => undefined,
        async () => new SandboxStoppedError("lost"),
      );
      let out = "";
      proc.stdout.on("data", (d) => (out += d));
      const err = await proc.exited.catch((e) => e);
      expect(err, `${user}: ${out}`).toBeInstanceOf(ExecFailedError);
      expect(err.message).toMatch(/4294967294/);
      expect(out).toBe("");
    }
  });
});

describe("output", () => {
  it("past maxBufferBytes rejects with MaxBufferExceededError carrying what was collected", async () => {
    const err = await sb
      .exec("sh", ["-c", "head -c 300000 /dev/zero >&2; head -c 8000000 /dev/zero"], { maxBufferBytes: 1 << 20, encoding: "buffer" })
      .catch((e) => e);
    expect(err).toBeInstanceOf(MaxBufferExceededError);
    expect(err.stdout.length + err.stderr.length).toBe(1 << 20);
    expect(err.stderr.length).toBe(300_000);
    // The sandbox is fine afterwards.
    expect((await sb.exec("echo", ["ok"])).stdout).toBe("ok\n");
  });

  it("kill() after the process exited loses none of its queued output", async () => {
    const proc = sb.spawn("sh", ["-c", "head -c 600000 /dev/zero; touch /tmp/wrote-all"]);
    // Nobody reads yet: the output waits in the agent's buffers.
    await guestFile("/tmp/wrote-all");
    await new Promise((r) => setTimeout(r, 300)); // ...and the shell has been reaped
    proc.kill("SIGKILL");
    let bytes = 0;
    proc.stdout.on("data", (d: Buffer) => (bytes += d.length));
    expect(await proc.exited).toEqual({ exitCode: 0, signal: null, timedOut: false });
    expect(bytes).toBe(600_000);
    proc.kill("SIGTERM"); // and once more, after `exited`: harmless
  });

  it("an aborted exec keeps the output it had", async () => {
    const ac = new AbortController();
    const pending = sb.exec("sh", ["-c", "echo started; echo oops >&2; touch /tmp/aborting; sleep 300"], { signal: ac.signal });
    await guestFile("/tmp/aborting");
    ac.abort();
    const err = await pending.catch((e) => e);
    expect(err).toBeInstanceOf(ExecAbortedError);
    expect(err).toMatchObject({ stdout: "started\n", stderr: "oops\n" });
  });
});

describe("limits", () => {
  it("never misses a process with timeoutMs of 1 to 3 ms", async () => {
    for (let batch = 0; batch < 6; batch++) {
      const exits = await Promise.all(
        Array.from({ length: 10 }, (_, i) => sb.spawn("sleep", ["30"], { timeoutMs: 1 + (i % 3) }).exited),
      );
      // The guest's own verdict, not the host's backstop (a rejection).
      for (const exit of exits) expect(exit).toMatchObject({ timedOut: true, signal: "SIGKILL" });
    }
    expect((await sb.exec("sh", ["-c", "pidof sleep || echo none"])).stdout).toBe("none\n");
  });

  it("refuses argv and env over the exec frame limit up front", async () => {
    const big = "x".repeat((1 << 20) + 1);
    await expect(sb.exec("echo", [big])).rejects.toMatchObject({ field: "args" });
    await expect(sb.exec("env", [], { env: { BIG: big } })).rejects.toMatchObject({ field: "options.env" });
    const before = vmProcesses().length;
    const err = await Sandbox.create({ env: { BIG: "x".repeat(2 << 20) } }).catch((e) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.field).toBe("env");
    expect(vmProcesses().length).toBe(before);
    // Just under the limit works (in strings the guest kernel takes: at most 128 KiB each).
    const env = Object.fromEntries(Array.from({ length: 9 }, (_, i) => [`B${i}`, "y".repeat(100 << 10)]));
    const r = await sb.exec("sh", ["-c", 'echo ${#B0} ${#B8}'], { env });
    expect(r.stdout).toBe(`${100 << 10} ${100 << 10}\n`);
  });
});

it("bounds the guest's words in SandboxCrashedError and marks them as guest output", async () => {
  const crashing = await Sandbox.create();
  const fake = `Kernel panic - ${"A".repeat(3000)}\u001b[2J\u202e`;
  const err = await crashing
    .exec("sh", ["-c", `printf '%s\\n' '${fake}' > /dev/console; sleep 1; echo b > /proc/sysrq-trigger; sleep 30`])
    .catch((e) => e);
  expect(err).toBeInstanceOf(SandboxCrashedError);
  expect(err.message).toMatch(/guest output \(untrusted\): "Kernel panic - A+…"$/);
  expect(err.message.length).toBeLessThan(400);
  expect(err.message).not.toMatch(/[\u0000-\u001f\u202e]/);
  await expect(crashing.closed).rejects.toBeInstanceOf(SandboxCrashedError);
});
