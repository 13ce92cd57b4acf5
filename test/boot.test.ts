// Real VMs: QEMU (KVM where it can boot the guest, TCG otherwise), Debian's
// cloud kernel, virtio-fs through virtiofsd, vsock through vhost-device-vsock.
import { spawn } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bootVm, ConfigError, GuestCrashedError, VirtualMachine } from "../lib/index.js";
import { openFds, runDirEntries, tempDir, vmProcesses, waitFor } from "./helpers.js";

let fdsBefore = 0;
beforeAll(() => {
  fdsBefore = openFds();
});
afterAll(async () => {
  // Every VM above has ended: nothing of theirs may remain.
  await waitFor("VM processes to end", () => vmProcesses().length === 0 || undefined);
  expect(runDirEntries()).toEqual([]);
  expect(openFds()).toBeLessThanOrEqual(fdsBefore + 2);
});

describe("a command in the guest", () => {
  it("returns the exit status and its output", async () => {
    const r = await bootVm({ command: ["/bin/sh", "-c", "echo hello-$((6*7)); exit 7"] });
    expect(r.exitCode).toBe(7);
    expect(r.signal).toBeNull();
    expect(r.console).toContain("hello-42");
    expect(["kvm", "tcg"]).toContain(r.accel);
  });

  it("passes env and workdir, and reports exit 0", async () => {
    const r = await bootVm({
      command: ["/bin/sh", "-c", 'echo "A=$A B=$B cwd=$(pwd)"'],
      env: { A: "1", B: "two words" },
      workdir: "/tmp",
    });
    expect(r.exitCode).toBe(0);
    expect(r.console).toContain("A=1 B=two words cwd=/tmp");
  });

  it("reports a missing program as exit 127", async () => {
    const r = await bootVm({ command: ["/no/such/program"] });
    expect(r.exitCode).toBe(127);
    expect(r.console).toContain("/no/such/program");
  });

  it("reports a command killed by a signal", async () => {
    const r = await bootVm({ command: ["/bin/sh", "-c", "kill -9 $$"] });
    expect(r.exitCode).toBeNull();
    expect(r.signal).toBe(9);
  });

  it("caps the console file however much the guest prints", async () => {
    const r = await bootVm({
      command: ["/bin/sh", "-c", "head -c 1048576 /dev/zero | tr '\\0' x; echo; echo done"],
      consoleLimitBytes: 65536,
    });
    expect(r.exitCode).toBe(0);
    expect(Buffer.byteLength(r.console)).toBeLessThan(65536 + 100);
    expect(r.console).toContain("[krunbox: console output past 65536 bytes dropped]");
  });

  it("drains a console flood past the cap without a wakeup per write", async () => {
    const consolePath = path.join(tempDir(), "console.log");
    await using vm = VirtualMachine.start({
      command: ["/bin/sh", "-c", "while :; do echo flood-flood-flood-flood-flood-flood-flood-flood-flood; done"],
      consolePath,
      consoleLimitBytes: 4096,
    });
    await waitFor("the cap", () => fs.existsSync(consolePath) && fs.readFileSync(consolePath, "utf8").includes("bytes dropped]"), 60_000);
    // Every poll() the runner sleeps in ends in a voluntary context switch.
    const wakeups = () => Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${vm.pid}/status`, "utf8"))![1]);
    const before = wakeups();
    await new Promise((r) => setTimeout(r, 3000));
    // One drain every 100 ms, not one wakeup per write QEMU makes (some 50,000 a second before).
    expect(wakeups() - before).toBeLessThan(300);
    expect(fs.statSync(consolePath).size).toBeLessThan(4096 + 100);
  });

  it("never modifies the built-in root (copy-on-write)", async () => {
    const r = await bootVm({ command: ["/bin/sh", "-c", "echo scribble > /etc/passwd && rm /bin/ls && echo wrote"] });
    expect(r.exitCode).toBe(0);
    expect(r.console).toContain("wrote");
    const again = await bootVm({ command: ["/bin/sh", "-c", "head -c 4 /etc/passwd; echo; test -e /bin/ls && echo ls-is-back"] });
    expect(again.console).toContain("root");
    expect(again.console).toContain("ls-is-back");
  });
});

describe("shares", () => {
  it("refuses guest writes to a read-only share, while a read-write share reaches the host", async () => {
    const ro = tempDir();
    const rw = tempDir();
    fs.writeFileSync(path.join(ro, "given.txt"), "from-host");
    const script = [
      "cat /ro/given.txt; echo",
      "echo x > /ro/new.txt && echo RO-WRITE-OK",
      "rm -f /ro/given.txt && echo RO-RM-OK",
      // Root in the guest can remount: the host must still refuse.
      "mount -o remount,rw /ro && echo remounted",
      "echo y > /ro/new2.txt && echo RO-WRITE2-OK",
      "touch -d 2001-01-01 /ro/given.txt && echo RO-TOUCH-OK",
      "chmod 777 /ro/given.txt && echo RO-CHMOD-OK",
      "echo data-from-guest > /rw/out.txt && mkdir /rw/sub && echo rw-done",
    ].join("; ");
    const r = await bootVm({
      command: ["/bin/sh", "-c", script],
      shares: [
        { hostPath: ro, guestPath: "/ro", readOnly: true },
        { hostPath: rw, guestPath: "/rw" },
      ],
    });
    expect(r.exitCode).toBe(0);
    expect(r.console).toContain("from-host");
    for (const marker of ["RO-WRITE-OK", "RO-RM-OK", "RO-WRITE2-OK", "RO-TOUCH-OK", "RO-CHMOD-OK"])
      expect(r.console).not.toContain(marker);
    expect(fs.readdirSync(ro)).toEqual(["given.txt"]);
    expect(fs.readFileSync(path.join(ro, "given.txt"), "utf8")).toBe("from-host");
    expect(fs.statSync(path.join(ro, "given.txt")).mode & 0o777).not.toBe(0o777);
    expect(r.console).toContain("rw-done");
    expect(fs.readFileSync(path.join(rw, "out.txt"), "utf8")).toBe("data-from-guest\n");
    expect(fs.statSync(path.join(rw, "sub")).isDirectory()).toBe(true);
  });

  it("bounds the host files a guest can make virtiofsd hold, which it cannot raise", async () => {
    // A host program allowed 1024 open files (its helpers get as many, at
    // most 2^18); its guest looks up 1500 files, each pinning one in virtiofsd.
    const dist = path.resolve("dist");
    const script = `
      import fs from "node:fs"; import path from "node:path";
      import { VirtualMachine } from ${JSON.stringify(`${dist}/index.js`)};
      import { SandboxProcess } from ${JSON.stringify(`${dist}/sandbox/process.js`)};
      import { ExecChannel } from ${JSON.stringify(`${dist}/sandbox/channel.js`)};
      const dir = ${JSON.stringify(tempDir())};
      for (let i = 0; i < 1500; i++) fs.writeFileSync(path.join(dir, "f" + i), "x");
      const socketPath = path.join(${JSON.stringify(tempDir())}, "agent.sock");
      const vm = VirtualMachine.start({ command: [], agentSocketPath: socketPath, shares: [{ hostPath: dir, guestPath: "/d" }] });
      await vm.ready;
      const run = async (cmd) => {
        const p = new SandboxProcess(new ExecChannel(socketPath), { argv: ["sh", "-c", cmd], env: [], cwd: "/", user: "", timeoutMs: 0, stdin: false }, () => undefined, async () => new Error("lost"));
        let out = ""; p.stdout.on("data", (d) => (out += d)); await p.exited; return out;
      };
      const refused = await run("ls -l /d >/dev/null 2>&1; cat /d/f1499 2>&1");
      const helpers = [];
      for (const pid of fs.readdirSync("/proc").filter((e) => /^\\d+$/.test(e))) {
        try {
          const stat = fs.readFileSync("/proc/" + pid + "/stat", "utf8");
          const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
          if (Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[2]) !== vm.pid || comm === "krunbox-runner") continue;
          const limit = /Max open files\\s+(\\d+)\\s+(\\d+)/.exec(fs.readFileSync("/proc/" + pid + "/limits", "utf8"));
          const capBnd = BigInt("0x" + /CapBnd:\\s+(\\w+)/.exec(fs.readFileSync("/proc/" + pid + "/status", "utf8"))[1]);
          helpers.push({ comm, soft: Number(limit[1]), hard: Number(limit[2]), fds: fs.readdirSync("/proc/" + pid + "/fd").length, sysResource: (capBnd >> 24n) & 1n ? 1 : 0 });
        } catch {}
      }
      const after = await run("echo still-serving");
      fs.closeSync(fs.openSync(path.join(dir, "f0"), "r"));
      await vm.stop(2000);
      console.log(JSON.stringify({ refused, helpers, after }));`;
    // Not spawnSync: the test runner's worker must stay responsive meanwhile.
    const child = spawn("sh", ["-c", 'ulimit -n 1024 && exec "$0" --input-type=module -e "$1"', process.execPath, script], { env: process.env });
    const r = { stdout: "", stderr: "" };
    child.stdout.on("data", (d) => (r.stdout += d));
    child.stderr.on("data", (d) => (r.stderr += d));
    await new Promise((resolve) => child.on("close", resolve));
    expect(r.stderr).toBe("");
    const { refused, helpers, after } = JSON.parse(r.stdout);
    // The guest hit the bound (and hurt only itself: its root is served by the same virtiofsd)...
    expect(refused).toMatch(/Too many open files/);
    expect(after).toBe("still-serving\n"); // ...while the host program and the VM go on
    expect(helpers.map((h: { comm: string }) => h.comm)).toEqual(expect.arrayContaining(["virtiofsd", "qemu-system-x86", "vhost-device-vs"]));
    for (const h of helpers) {
      expect(h, h.comm).toMatchObject({ soft: 1024, hard: 1024, sysResource: 0 });
      expect(h.fds, h.comm).toBeLessThanOrEqual(1024);
    }
  });

  it("mounts 16 shares in one VM", async () => {
    const dirs = Array.from({ length: 16 }, (_, i) => {
      const d = tempDir();
      fs.writeFileSync(path.join(d, "id"), `share-${i}`);
      return d;
    });
    const r = await bootVm({
      command: ["/bin/sh", "-c", "for i in $(seq 0 15); do cat /s/$i/id; echo; echo back-$i > /s/$i/reply; done"],
      shares: dirs.map((d, i) => ({ hostPath: d, guestPath: `/s/${i}` })),
    });
    expect(r.exitCode).toBe(0);
    dirs.forEach((d, i) => {
      expect(r.console).toMatch(new RegExp(`share-${i}\\r?\\n`));
      expect(fs.readFileSync(path.join(d, "reply"), "utf8")).toBe(`back-${i}\n`);
    });
  });
});

describe("vsock", () => {
  it("carries a stream host -> guest, byte-exact", async () => {
    const dir = tempDir();
    const socketPath = path.join(dir, "echo.sock");
    await using vm = VirtualMachine.start({
      command: ["/sbin/krunbox-agent", "vsock-echo", "5000"],
      vsock: [{ port: 5000, socketPath, listen: true }],
    });
    await vm.ready;
    const payload = crypto.randomBytes(1 << 20);
    // The echo server starts just after the agent reports ready: retry.
    let reply: Buffer | undefined;
    for (let attempt = 0; attempt < 100 && !reply; attempt++) {
      reply = await echo(socketPath, payload).catch(() => undefined);
      if (!reply) await new Promise((r) => setTimeout(r, 100));
    }
    expect(reply?.length).toBe(payload.length);
    expect(reply!.equals(payload)).toBe(true);
    const exit = await vm.stop();
    expect(exit?.stopped).toBe(true);
  });

  it("carries a stream guest -> host", async () => {
    const dir = tempDir();
    const socketPath = path.join(dir, "host.sock");
    const received: Buffer[] = [];
    const server = net.createServer((conn) => {
      conn.on("data", (d) => {
        received.push(d);
        if (Buffer.concat(received).includes("\n")) conn.end("pong-from-host\n");
      });
    });
    await new Promise<void>((r) => server.listen(socketPath, r));
    try {
      const r = await bootVm({
        command: ["/bin/sh", "-c", "echo ping-from-guest | /sbin/krunbox-agent vsock-connect 5001"],
        vsock: [{ port: 5001, socketPath, listen: false }],
      });
      expect(r.exitCode).toBe(0);
      expect(Buffer.concat(received).toString()).toBe("ping-from-guest\n");
      expect(r.console).toContain("pong-from-host");
    } finally {
      server.close();
    }
  });
});

// vsock has no half-close (ending a side ends the connection), so the
// client reads the whole echo before it closes.
function echo(socketPath: string, payload: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let received = 0;
    const sock = net.createConnection(socketPath);
    sock.on("connect", () => sock.write(payload));
    sock.on("data", (d) => {
      chunks.push(d);
      received += d.length;
      if (received >= payload.length) sock.end();
    });
    sock.on("error", reject);
    sock.on("close", () => {
      const all = Buffer.concat(chunks);
      if (all.length === payload.length) resolve(all);
      else reject(new Error(`short echo: ${all.length} bytes`));
    });
  });
}

describe("lifecycle", () => {
  it("runs 3 VMs at once", async () => {
    const results = await Promise.all(
      [3, 4, 5].map((code) => bootVm({ command: ["/bin/sh", "-c", `echo vm-${code}; exit ${code}`] })),
    );
    results.forEach((r, i) => {
      expect(r.exitCode).toBe(3 + i);
      expect(r.console).toContain(`vm-${3 + i}`);
    });
  });

  it("reports a guest kernel panic as GuestCrashedError", async () => {
    const err = await bootVm({ command: ["/bin/sh", "-c", "echo c > /proc/sysrq-trigger; sleep 30"] }).catch((e) => e);
    expect(err).toBeInstanceOf(GuestCrashedError);
    expect(err.message).toMatch(/Kernel panic/);
    expect(err.console).toContain("sysrq");
  });

  it("stops gracefully: the command gets SIGTERM and the VM ends", async () => {
    const vm = VirtualMachine.start({ command: ["/bin/sleep", "1000"] });
    const states: string[] = [];
    vm.on("state", (s) => states.push(s));
    await vm.ready;
    const exit = await vm.stop(10_000);
    expect(exit).toMatchObject({ stopped: true, forced: false, signal: 15 });
    expect(states).toEqual(["running", "stopping", "exited"]);
    expect(await vm.stop()).toEqual(exit); // idempotent
  });

  it("kills a guest that ignores the stop request after the grace period", async () => {
    const dir = tempDir();
    const vm = VirtualMachine.start({
      command: ["/bin/sh", "-c", "trap '' TERM; touch /flag/armed; while :; do sleep 1; done"],
      shares: [{ hostPath: dir, guestPath: "/flag" }],
    });
    await waitFor("the guest to ignore SIGTERM", () => fs.existsSync(path.join(dir, "armed")), 30_000);
    const exit = await vm.stop(500);
    expect(exit).toMatchObject({ stopped: true, forced: true });
  });

  it("stops a VM that is still booting", async () => {
    const vm = VirtualMachine.start({ command: ["/bin/sleep", "1000"] });
    const exit = await vm.stop(1000);
    expect(exit?.stopped).toBe(true);
  });
});

describe("bad config", () => {
  it("names the field and starts nothing", () => {
    const before = vmProcesses().length;
    const cases: [object, string][] = [
      [{ command: [""] }, "command"],
      [{ command: ["/bin/true"], cpus: 0 }, "cpus"],
      [{ command: ["/bin/true"], rootPath: "/no/such/dir" }, "rootPath"],
      [{ command: ["/bin/true"], shares: [{ hostPath: "/tmp", guestPath: "rel" }] }, "shares[0].guestPath"],
      [
        {
          command: ["/bin/true"],
          shares: [
            { hostPath: "/tmp", guestPath: "/x" },
            { hostPath: "/tmp", guestPath: "/x" },
          ],
        },
        "shares[1].guestPath",
      ],
      [{ command: ["/bin/true"], vsock: [{ port: 1024, socketPath: "/tmp/x.sock", listen: true }] }, "vsock[0].port"],
      [{ command: ["/bin/true"], env: { "": "x" } }, "env[0]"],
      [{ command: ["/bin/true"], workdir: "tmp" }, "workdir"],
    ];
    for (const [options, field] of cases) {
      let err: unknown;
      try {
        VirtualMachine.start(options as never);
      } catch (e) {
        err = e;
      }
      expect(err, field).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).field).toBe(field);
    }
    expect(vmProcesses().length).toBe(before);
  });
});
