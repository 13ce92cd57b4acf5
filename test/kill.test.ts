// Nothing outlives the host program, even when it is SIGKILLed.
import { spawn } from "node:child_process";
import path from "node:path";
import { expect, it } from "vitest";
import { processGroup, runDirEntries, vmProcesses, waitFor } from "./helpers.js";

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
