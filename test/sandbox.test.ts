// The Sandbox API on real VMs: exec over vsock to the guest agent.
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ConfigError,
  ExecAbortedError,
  ExecFailedError,
  ExecTimeoutError,
  Sandbox,
  SandboxConfigError,
  SandboxCrashedError,
  SandboxStoppedError,
} from "../lib/index.js";
import path from "node:path";
import { runtimePaths } from "../lib/vm/runtime.js";
import { openFds, runDirEntries, tempDir, vmProcesses, waitFor } from "./helpers.js";

const sandboxSockets = () => fs.readdirSync(os.tmpdir()).filter((f) => f.startsWith("krunbox-sb-"));

describe("one sandbox", () => {
  let sb: Sandbox;
  beforeAll(async () => {
    sb = await Sandbox.create({ env: { A: "1" }, workdir: "/" });
  });
  afterAll(async () => {
    await sb.stop();
    expect(sb.state).toBe("stopped");
  });

  it("separates stdout and stderr, and returns a non-zero exit as a result", async () => {
    const r = await sb.exec("sh", ["-c", "echo $A; echo err >&2; exit 3"], { timeoutMs: 5000 });
    expect(r).toMatchObject({ exitCode: 3, signal: null, stdout: "1\n", stderr: "err\n" });
  });

  it("reports a process killed by a signal", async () => {
    const r = await sb.exec("sh", ["-c", "kill -KILL $$"]);
    expect(r).toMatchObject({ exitCode: null, signal: "SIGKILL" });
  });

  it("applies env, cwd and user", async () => {
    const r = await sb.exec("sh", ["-c", 'echo "$A $B $(pwd) $(id -u):$(id -g)"'], { env: { B: "2" }, cwd: "/tmp", user: "nobody" });
    expect(r.stdout).toBe("1 2 /tmp 65534:65534\n");
    const numeric = await sb.exec("id", ["-u"], { user: "1234:99" });
    expect(numeric.stdout).toBe("1234\n");
  });

  it("rejects an unknown user with a typed error", async () => {
    await expect(sb.exec("true", [], { user: "nosuchuser" })).rejects.toBeInstanceOf(ExecFailedError);
  });

  it("rejects a program that cannot start with ExecFailedError naming the command, and errors the streams of spawn", async () => {
    const missing = await sb.exec("/no/such/program").catch((e) => e);
    expect(missing).toBeInstanceOf(ExecFailedError);
    expect(missing).toMatchObject({ field: "command", errno: "ENOENT", message: '"/no/such/program" does not exist in the guest' });
    await expect(sb.exec("nosuchprogram")).rejects.toMatchObject({ field: "command", message: expect.stringMatching(/"nosuchprogram" was not found in the guest's PATH/) });
    await expect(sb.exec("/etc/passwd")).rejects.toMatchObject({ field: "command", errno: "EACCES" });
    await expect(sb.exec("true", [], { cwd: "/etc/passwd" })).rejects.toMatchObject({ field: "cwd", errno: "ENOTDIR" });
    // A stream consumer hears it as an error, never as a clean end with
    // text injected into the process's stderr.
    const p = sb.spawn("/no/such/program");
    const stderr: Buffer[] = [];
    const consumed = (async () => {
      for await (const chunk of p.stderr) stderr.push(chunk as Buffer);
    })();
    await expect(consumed).rejects.toBeInstanceOf(ExecFailedError);
    await expect(p.exited).rejects.toBeInstanceOf(ExecFailedError);
    expect(Buffer.concat(stderr).toString()).toBe("");
  });

  it("round-trips 10 MiB of stdin byte-exact", async () => {
    const input = crypto.randomBytes(10 << 20);
    const r = await sb.exec("cat", [], { input, encoding: "buffer" });
    expect(r.exitCode).toBe(0);
    expect(r.stdout.length).toBe(input.length);
    expect(r.stdout.equals(input)).toBe(true);
  });

  it("streams with spawn: stdin pipe, stdout, kill", async () => {
    const p = sb.spawn("cat", [], { stdin: "pipe" });
    const chunks: Buffer[] = [];
    p.stdout.on("data", (d) => chunks.push(d));
    p.stdin!.write("one\n");
    p.stdin!.end("two\n");
    expect(await p.exited).toEqual({ exitCode: 0, signal: null, timedOut: false });
    expect(Buffer.concat(chunks).toString()).toBe("one\ntwo\n");

    const sleeper = sb.spawn("sleep", ["100"]);
    await waitFor("the guest pid", () => sleeper.pid);
    sleeper.kill("SIGTERM");
    expect(await sleeper.exited).toMatchObject({ signal: "SIGTERM" });
  });

  it("runs 8 execs at once", async () => {
    const results = await Promise.all(
      Array.from({ length: 8 }, (_, i) => sb.exec("sh", ["-c", "sleep 0.3; echo $I; exit $I"], { env: { I: String(i) } })),
    );
    results.forEach((r, i) => expect(r).toMatchObject({ exitCode: i, stdout: `${i}\n` }));
  });

  it("kills the whole process group on timeout", async () => {
    const err = await sb
      .exec("sh", ["-c", "sleep 300 & echo $! > /tmp/bg; echo started; sleep 300"], { timeoutMs: 1000 })
      .catch((e) => e);
    expect(err).toBeInstanceOf(ExecTimeoutError);
    expect(err.stdout).toBe("started\n");
    const check = await sb.exec("sh", ["-c", "kill -0 $(cat /tmp/bg) 2>/dev/null && echo alive || echo gone"]);
    expect(check.stdout).toBe("gone\n");
  });

  it("kills the process on AbortSignal", async () => {
    const ac = new AbortController();
    const pending = sb.exec("sh", ["-c", "echo $$ > /tmp/aborted; sleep 300"], { signal: ac.signal });
    await new Promise((r) => setTimeout(r, 500));
    ac.abort();
    await expect(pending).rejects.toBeInstanceOf(ExecAbortedError);
    const check = await sb.exec("sh", ["-c", "sleep 0.2; kill -0 $(cat /tmp/aborted) 2>/dev/null && echo alive || echo gone"]);
    expect(check.stdout).toBe("gone\n");
  });

  it("reaps orphaned processes (no zombies)", async () => {
    const r = await sb.exec("sh", [
      "-c",
      "for i in $(seq 200); do (sleep 0.01 &); done; sleep 1; " +
        "z=0; for s in /proc/[0-9]*/stat; do read -r _ _ st _ < $s 2>/dev/null && [ \"$st\" = Z ] && z=$((z+1)); done; echo zombies=$z",
    ]);
    expect(r.stdout).toBe("zombies=0\n");
  });

  it("validates exec options, naming the field", async () => {
    await expect(sb.exec("true", [], { timeoutMs: -1 })).rejects.toMatchObject({ field: "options.timeoutMs" });
    await expect(sb.exec("true", [], { cwd: "relative" })).rejects.toMatchObject({ field: "options.cwd" });
    await expect(sb.exec("true", [], { bogus: 1 } as never)).rejects.toBeInstanceOf(ConfigError);
    expect(() => sb.spawn("", [])).toThrow(ConfigError);
  });
});

// A root folder with busybox as /bin/sh and a /marker holding "image".
function busyboxRoot(): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "krunbox-root-"));
  fs.mkdirSync(path.join(root, "bin"));
  fs.copyFileSync(path.join(runtimePaths().dir, "busybox"), path.join(root, "bin/busybox"));
  fs.chmodSync(path.join(root, "bin/busybox"), 0o755);
  fs.symlinkSync("busybox", path.join(root, "bin/sh"));
  fs.writeFileSync(path.join(root, "marker"), "image");
  return root;
}

describe("sandbox lifecycle", () => {
  it("isolates the roots of two sandboxes", async () => {
    await using a = await Sandbox.create();
    await using b = await Sandbox.create();
    expect((await a.exec("sh", ["-c", "grep ' /tmp ' /proc/mounts"])).stdout).toMatch(/^tmpfs \/tmp tmpfs/);
    await a.exec("sh", ["-c", "echo mine > /etc/marker"]);
    expect((await a.exec("cat", ["/etc/marker"])).stdout).toBe("mine\n");
    expect((await b.exec("sh", ["-c", "test -e /etc/marker && echo seen || echo absent"])).stdout).toBe("absent\n");
  });

  it("runs 3 sandboxes at once", async () => {
    const boxes = await Promise.all([1, 2, 3].map(() => Sandbox.create()));
    const out = await Promise.all(boxes.map((b, i) => b.exec("sh", ["-c", `echo box-${i}`])));
    out.forEach((r, i) => expect(r.stdout).toBe(`box-${i}\n`));
    await Promise.all(boxes.map((b) => b.stop()));
  });

  it("rejects a running exec when the sandbox stops, without hanging", async () => {
    const sb = await Sandbox.create();
    const states: string[] = [];
    sb.on("state", (s) => states.push(s));
    const pending = sb.exec("sleep", ["300"]).catch((e) => e);
    await new Promise((r) => setTimeout(r, 300));
    await sb.stop();
    expect(await pending).toBeInstanceOf(SandboxStoppedError);
    expect(states).toEqual(["stopping", "stopped"]);
    await sb.stop(); // idempotent
    expect(() => sb.spawn("true")).toThrow(SandboxStoppedError);
  });

  it("reports a guest crash as state crashed", async () => {
    const sb = await Sandbox.create();
    const err = await sb.exec("sh", ["-c", "echo c > /proc/sysrq-trigger"]).catch((e) => e);
    expect(err).toBeInstanceOf(SandboxCrashedError);
    await expect(sb.closed).rejects.toBeInstanceOf(SandboxCrashedError);
    expect(sb.state).toBe("crashed");
  });

  it("runs on a local root folder, copy-on-write", async () => {
    const root = busyboxRoot();
    const before = fs.readdirSync(root).sort();
    await using sb = await Sandbox.create({ image: { dir: root } });
    const r = await sb.exec("/bin/sh", ["-c", "/bin/busybox cat /marker; echo changed > /marker; /bin/busybox cat /marker"]);
    expect(r.stdout).toBe("imagechanged\n");
    await sb.stop();
    expect(fs.readFileSync(path.join(root, "marker"), "utf8")).toBe("image");
    expect(fs.readdirSync(root).sort()).toEqual(before);
    await expect(Sandbox.create({ image: { dir: path.join(root, "missing") } })).rejects.toMatchObject({ field: "image.dir" });
  });

  // The image root has a share server of its own that lets the guest cache
  // it: it must still refuse writes on the host, whatever guest root does.
  it("keeps a cached image root read-only on the host against guest root", async () => {
    const root = busyboxRoot();
    const before = fs.readdirSync(root).sort();
    await using sb = await Sandbox.create({ image: { dir: root } });
    const attempts = [
      "/bin/busybox mkdir -p /r && /bin/busybox mount -t virtiofs krunbox-root /r && echo x > /r/marker",
      "/bin/busybox mount -t virtiofs krunbox-root /r; /bin/busybox mount -o remount,rw /r && /bin/busybox touch /r/new",
      "/bin/busybox mount -t virtiofs krunbox-root /r; /bin/busybox rm /r/marker",
    ];
    for (const cmd of attempts) expect((await sb.exec("/bin/sh", ["-c", cmd])).exitCode, cmd).not.toBe(0);
    await sb.stop();
    expect(fs.readFileSync(path.join(root, "marker"), "utf8")).toBe("image");
    expect(fs.readdirSync(root).sort()).toEqual(before);
  });

  it("validates create options, naming the field, and starts nothing", async () => {
    const before = vmProcesses().length;
    await expect(Sandbox.create({ cpus: 0 })).rejects.toMatchObject({ field: "cpus" });
    await expect(Sandbox.create({ memoryMiB: 1.5 })).rejects.toMatchObject({ field: "memoryMiB" });
    await expect(Sandbox.create({ env: { "A=B": "x" } })).rejects.toMatchObject({ field: "env.A=B" });
    await expect(Sandbox.create({ workdir: "x" })).rejects.toMatchObject({ field: "workdir" });
    expect(vmProcesses().length).toBe(before);
  });

  it("checks the workdir and the default user in the guest once, at create, and leaves nothing running", async () => {
    const before = vmProcesses().length;
    await expect(Sandbox.create({ user: "no body" })).rejects.toMatchObject({ field: "user", code: "ERR_KRUNBOX_CONFIG" });
    const noDir = await Sandbox.create({ workdir: "/nope" }).catch((e) => e);
    expect(noDir).toBeInstanceOf(SandboxConfigError);
    expect(noDir).toMatchObject({ field: "workdir", message: expect.stringMatching(/"\/nope" does not exist in the guest/) });
    const notDir = await Sandbox.create({ workdir: "/etc/passwd" }).catch((e) => e);
    expect(notDir).toMatchObject({ field: "workdir", message: expect.stringMatching(/is not a folder/) });
    const noUser = await Sandbox.create({ user: "nosuchuser" }).catch((e) => e);
    expect(noUser).toBeInstanceOf(SandboxConfigError);
    expect(noUser).toMatchObject({ field: "user", message: expect.stringMatching(/nosuchuser.*\/etc\/passwd/) });
    expect(vmProcesses().length).toBe(before);
    // A user and workdir that resolve become every exec's defaults.
    await using sb = await Sandbox.create({ user: "nobody", workdir: "/tmp" });
    expect((await sb.exec("sh", ["-c", "echo $(id -u) $(pwd)"])).stdout).toBe("65534 /tmp\n");
    // An exec's own cwd is checked the same way, before anything starts.
    await expect(sb.exec("true", [], { cwd: "/nope" })).rejects.toMatchObject({ field: "cwd", code: "ERR_KRUNBOX_EXEC_FAILED" });
  });

  it("leaks no processes, fds, sockets or temp folders over 30 create-exec-stop cycles", async () => {
    const fds = openFds();
    // A temp folder of our own: other programs on this machine make socket folders too.
    const savedTmp = process.env.TMPDIR;
    process.env.TMPDIR = tempDir();
    try {
      for (let i = 0; i < 30; i++) {
        const sb = await Sandbox.create();
        expect((await sb.exec("echo", [String(i)])).stdout).toBe(`${i}\n`);
        await sb.stop();
      }
      await waitFor("VM processes to end", () => vmProcesses().length === 0 || undefined);
      expect(runDirEntries()).toEqual([]);
      expect(sandboxSockets()).toEqual([]);
      expect(openFds()).toBeLessThanOrEqual(fds + 2);
    } finally {
      if (savedTmp === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = savedTmp;
    }
  });
});
