// Nothing outlives the host program, even when it is SIGKILLed.
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { expect, it } from "vitest";
import { processGroup, runAsync, runDirEntries, tempDir, vmProcesses, waitFor } from "./helpers.js";

it("leaves no qemu, virtiofsd or vsock process behind when Node is SIGKILLed", async () => {
  const child = spawn(process.execPath, [path.join(import.meta.dirname, "fixtures/hold-vm.mjs")], {
    stdio: ["ignore", "pipe", "inherit"],
    env: process.env,
  });
  let out = "";
  child.stdout.on("data", (d) => (out += d));
  const { runner } = await waitFor("the child's VM", () => out.includes("\n") && JSON.parse(out), 60_000);

  const group = processGroup(runner).map((p) => p.comm);
  expect(group).toEqual(expect.arrayContaining(["krunbox-runner", "qemu-system-x86", "virtiofsd", "vhost-device-vs"]));
  expect(runDirEntries()).toHaveLength(1);

  child.kill("SIGKILL");
  await waitFor("every VM process to end", () => processGroup(runner).length === 0, 15_000);
  expect(vmProcesses()).toEqual([]);
  // The runner got SIGTERM from the kernel (PR_SET_PDEATHSIG) and cleaned up.
  await waitFor("the run folder to be removed", () => runDirEntries().length === 0, 5_000);
});

it("cleans up after a runner that was itself SIGKILLed", async () => {
  const { VirtualMachine, VmmFailedError, bootVm } = await import("../lib/index.js");
  const vm = VirtualMachine.start({ command: ["/bin/sleep", "100000"] });
  await vm.ready;
  process.kill(vm.pid, "SIGKILL");
  await expect(vm.exited).rejects.toBeInstanceOf(VmmFailedError);
  await waitFor("the helpers to follow their runner", () => processGroup(vm.pid).length === 0, 15_000);
  // Its run folder is stale now; the next runner sweeps it.
  expect(runDirEntries()).toHaveLength(1);
  const r = await bootVm({ command: ["/bin/true"] });
  expect(r.exitCode).toBe(0);
  expect(runDirEntries()).toEqual([]);
});

it("sweeps the socket folder of a host program killed by a signal, and no other", async () => {
  const { Sandbox } = await import("../lib/index.js");
  // A temp folder of our own: other programs on this machine make socket folders too.
  const tmp = tempDir();
  const savedTmp = process.env.TMPDIR;
  process.env.TMPDIR = tmp;
  const socketDirs = () => fs.readdirSync(tmp).filter((f) => f.startsWith("krunbox-sb-")).map((f) => path.join(tmp, f));
  try {
    const child = spawn(process.execPath, [path.join(import.meta.dirname, "fixtures/hold-sandbox.mjs")], {
      stdio: ["ignore", "pipe", "inherit"],
      env: process.env,
    });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    await waitFor("the child's sandbox", () => out.includes("ready"), 60_000);
    const [leaked] = socketDirs();
    child.kill("SIGKILL");
    await waitFor("its VM to end", () => vmProcesses().length === 0, 15_000);
    expect(fs.existsSync(leaked)).toBe(true); // nobody was left to remove it

    await using live = await Sandbox.create();
    const [liveDir] = socketDirs().filter((d) => d !== leaked);
    const foreign = fs.mkdtempSync(path.join(tmp, "krunbox-sb-"));
    fs.writeFileSync(path.join(foreign, "lock"), "");
    fs.chownSync(foreign, 54321, 54321);
    const unlocked = fs.mkdtempSync(path.join(tmp, "krunbox-sb-")); // as older versions made them
    // All look old: the sweep spares folders younger than a minute (a sandbox being created).
    const old = new Date(Date.now() - 120_000);
    for (const d of [leaked, liveDir, foreign, unlocked]) fs.utimesSync(d, old, old);

    await using next = await Sandbox.create();
    expect(fs.existsSync(leaked)).toBe(false);
    expect(fs.existsSync(liveDir)).toBe(true); // its owner holds the lock
    expect(fs.existsSync(foreign)).toBe(true); // not ours
    expect(fs.existsSync(unlocked)).toBe(true); // maybe in use
    expect((await live.exec("echo", ["alive"])).stdout).toBe("alive\n");
  } finally {
    if (savedTmp === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = savedTmp;
  }
});

it("lets Node exit with a sandbox it never stopped once unref()'d, after its last exec, and leaves nothing behind", async () => {
  const script = path.join(import.meta.dirname, "fixtures/unref-sandbox.mjs");
  const unrefd = await runAsync(process.execPath, [script, "unref"], { timeoutMs: 120_000 });
  expect(unrefd).toMatchObject({ status: 0, stdout: "slept\n" });
  await waitFor("the VM to end with its host program", () => vmProcesses().length === 0, 15_000);
  await waitFor("the run folder to be removed", () => runDirEntries().length === 0, 5_000);

  // Without unref() the sandbox keeps Node running, as a child process would.
  const held = spawn(process.execPath, [script], { stdio: ["ignore", "pipe", "inherit"], env: process.env });
  let out = "";
  held.stdout.on("data", (d) => (out += d));
  await waitFor("its exec", () => out === "slept\n", 120_000);
  await new Promise((r) => setTimeout(r, 2000));
  expect(held.exitCode).toBeNull();
  held.kill("SIGKILL");
  await waitFor("every VM process to end", () => vmProcesses().length === 0, 15_000);
});
