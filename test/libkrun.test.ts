// The libkrun backend cannot boot a guest on this project's CI hosts (their
// KVM is PVM, which runs only PVM guest kernels), so these tests drive the
// real runner against a TEST DOUBLE of libkrun (test/doubles) that
// records every krun_* call and exits like krun_start_enter does.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, expect, it } from "vitest";
import { LibkrunNotFoundError, VirtualMachine } from "../lib/index.js";
import { packageRoot } from "../lib/vm/runtime.js";
import { tempDir } from "./helpers.js";

const double = path.join(packageRoot, "build/Release/libkrun-double.so");
const oldDouble = path.join(packageRoot, "build/Release/libkrun-double-old.so");
let log: string;

beforeEach(() => {
  log = path.join(tempDir(), "calls.log");
  process.env.KRUN_DOUBLE_LOG = log;
  process.env.KRUN_DOUBLE_EXIT = "5";
  process.env.KRUNBOX_TEST_SECRET = "must-not-reach-the-guest";
});
afterEach(() => {
  delete process.env.KRUN_DOUBLE_LOG;
  delete process.env.KRUN_DOUBLE_EXIT;
  delete process.env.KRUNBOX_TEST_SECRET;
});

it("translates the VM config into krun_* calls and reports the workload's exit status", async () => {
  const root = tempDir();
  const ro = tempDir();
  const rw = tempDir();
  const vm = VirtualMachine.start({
    backend: "libkrun",
    libkrunPath: double,
    cpus: 2,
    memoryMiB: 512,
    rootPath: root,
    shares: [
      { hostPath: ro, guestPath: "/src", readOnly: true },
      { hostPath: rw, guestPath: "/data" },
    ],
    vsock: [
      { port: 5000, socketPath: "/tmp/in.sock", listen: true },
      { port: 5001, socketPath: "/tmp/out.sock", listen: false },
    ],
    agentSocketPath: "/tmp/agent.sock",
    agentFsSocketPath: "/tmp/agent-fs.sock",
    command: ["/bin/sh", "-c", "echo hi"],
    env: { A: "1" },
    workdir: "/work",
    consolePath: "/tmp/krun-console.log",
  });
  const exit = await vm.exited;
  expect(exit.code).toBe(5);
  expect(vm.accel).toBe("kvm");
  const runDir = `${process.env.KRUNBOX_RUN_DIR}/vm-XXXXXX`;
  const expected = [
    "krun_create_ctx",
    "krun_set_vm_config 7 2 512",
    `krun_set_root 7 ${root}`,
    // every share travels in the one tree the agent mounts (multiplexed)
    `krun_add_virtiofs3 7 krunbox ${runDir}/fs 0 0`,
    "krun_disable_implicit_vsock 7",
    "krun_add_vsock 7 0",
    `krun_add_vsock_port2 7 1024 ${runDir}/ctl.sock 0`,
    "krun_add_vsock_port2 7 1025 /tmp/agent.sock 1",
    "krun_add_vsock_port2 7 1026 /tmp/agent-fs.sock 1",
    "krun_add_vsock_port2 7 5000 /tmp/in.sock 1",
    "krun_add_vsock_port2 7 5001 /tmp/out.sock 0",
    // the command, env and workdir reach the agent through the tree's config
    "krun_set_exec 7 /sbin/krunbox-agent",
    "  argv [--under-init]",
    "  envp",
    "krun_set_workdir 7 /",
    "krun_set_console_output 7 /tmp/krun-console.log",
    "krun_start_enter 7",
  ];
  const calls = fs.readFileSync(log, "utf8").trim().split("\n").map((c) => c.replace(/\/vm-[A-Za-z0-9]{6}\//, "/vm-XXXXXX/"));
  expect(calls).toEqual(expected);
  // krun_start_enter exits with exit(): the run folder went with it.
  expect(fs.readdirSync(process.env.KRUNBOX_RUN_DIR!).filter((d) => d.startsWith("vm-"))).toEqual([]);
});

it("exports a read-only root through krun_add_virtiofs3", async () => {
  const root = tempDir();
  process.env.KRUN_DOUBLE_EXIT = "0";
  const vm = VirtualMachine.start({ backend: "libkrun", libkrunPath: double, rootPath: root, rootReadOnly: true, command: ["/x"] });
  expect((await vm.exited).code).toBe(0);
  const calls = fs.readFileSync(log, "utf8");
  expect(calls).toContain(`krun_add_virtiofs3 7 /dev/root ${root} 0 1`);
  expect(calls).not.toContain("krun_set_root");
  expect(calls).not.toContain("must-not-reach-the-guest");
  expect(calls).toContain("  envp\n"); // nothing of the host's environment
});

it("reports a missing libkrun with a typed error that says how to install it", async () => {
  const vm = VirtualMachine.start({ backend: "libkrun", libkrunPath: "/nonexistent/libkrun.so.1", rootPath: tempDir(), command: ["/x"] });
  const err = await vm.exited.catch((e) => e);
  expect(err).toBeInstanceOf(LibkrunNotFoundError);
  expect(err.message).toMatch(/cannot load \/nonexistent\/libkrun\.so\.1/);
  expect(err.message).toMatch(/dnf install libkrun/);
  expect(err.message).toMatch(/KRUNBOX_LIBKRUN/);
});

it("refuses a libkrun without krun_add_vsock rather than give the guest the host's network", async () => {
  const vm = VirtualMachine.start({ backend: "libkrun", libkrunPath: oldDouble, rootPath: tempDir(), command: ["/x"] });
  const err = await vm.exited.catch((e) => e);
  expect(err).toBeInstanceOf(LibkrunNotFoundError);
  expect(err.message).toMatch(/krun_add_vsock.*1\.15 or newer/);
  expect(fs.existsSync(log)).toBe(false); // failed before any krun_* call
});

it("finds libkrun through KRUNBOX_LIBKRUN", async () => {
  process.env.KRUNBOX_LIBKRUN = double;
  try {
    const vm = VirtualMachine.start({ backend: "libkrun", rootPath: tempDir(), command: ["/x"] });
    expect((await vm.exited).code).toBe(5);
  } finally {
    delete process.env.KRUNBOX_LIBKRUN;
  }
});

it("fails a libkrun sandbox whose VM ends before its agent is ready with a typed error, leaving nothing", async () => {
  const { Sandbox, KrunboxError } = await import("../lib/index.js");
  const before = fs.readdirSync(os.tmpdir()).filter((f) => f.startsWith("krunbox-sb-")).length;
  const err = await Sandbox.create({ backend: "libkrun", libkrunPath: double }).catch((e) => e);
  expect(err).toBeInstanceOf(KrunboxError);
  expect(fs.readFileSync(log, "utf8")).toContain("krun_add_vsock_port2 7 1025 ");
  expect(fs.readdirSync(os.tmpdir()).filter((f) => f.startsWith("krunbox-sb-")).length).toBe(before);
  expect(fs.readdirSync(process.env.KRUNBOX_RUN_DIR!).filter((d) => d.startsWith("vm-"))).toEqual([]);
});

it("gives a guest with a network a virtio-net device on the runner's stack, and the agent's port forwarder", async () => {
  process.env.KRUN_DOUBLE_DNS = "svc.test,other.test";
  try {
    const vm = VirtualMachine.start({
      backend: "libkrun",
      libkrunPath: double,
      rootPath: tempDir(),
      command: ["/x"],
      network: { allow: [{ kind: "name", value: "svc.test", text: "svc.test" }], deny: [], hosts: { "svc.test": ["127.0.0.1"] } },
      forwardSocketPath: "/tmp/krun-forward.sock",
      ports: [{ hostIp: "127.0.0.1", hostPort: 0, guestPort: 80 }],
    });
    expect((await vm.exited).code).toBe(5);
    const calls = fs.readFileSync(log, "utf8").trim().split("\n");
    // No TSI, then the one network device: a stream socket, the guest's MAC, no offloads, no DHCP.
    expect(calls.indexOf("krun_add_vsock 7 0")).toBeLessThan(calls.indexOf("krun_add_net_unixstream 7 - stream 52:54:00:6b:62:02 0 0"));
    expect(calls).toContain("krun_add_vsock_port2 7 1027 /tmp/krun-forward.sock 1");
    // The runner's stack answers on that socket as it does for QEMU.
    expect(calls).toContain("  dns svc.test rcode=0 a=198.19.0.1");
    expect(calls).toContain("  dns other.test rcode=3");
    expect(vm.ports).toEqual([{ guest: 80, host: expect.any(Number), hostIp: "127.0.0.1" }]);
    expect(vm.ports[0].host).toBeGreaterThan(0);
  } finally {
    delete process.env.KRUN_DOUBLE_DNS;
  }
});

it("refuses a network on a libkrun without krun_add_net_unixstream", async () => {
  const noNet = path.join(packageRoot, "build/Release/libkrun-double-nonet.so");
  const vm = VirtualMachine.start({
    backend: "libkrun", libkrunPath: noNet, rootPath: tempDir(), command: ["/x"],
    network: { allow: [{ kind: "any", text: "*" }], deny: [], hosts: {} },
  });
  const err = await vm.exited.catch((e) => e);
  expect(err).toBeInstanceOf(LibkrunNotFoundError);
  expect(err.message).toMatch(/krun_add_net_unixstream/);
  expect(fs.readFileSync(log, "utf8")).not.toContain("krun_start_enter");
});

it("gives a disk image root to the guest as a read-only disk in the format given", async () => {
  const image = path.join(tempDir(), "root.qcow2");
  fs.writeFileSync(image, "");
  const root = tempDir();
  const vm = VirtualMachine.start({
    backend: "libkrun", libkrunPath: double, rootPath: root, command: ["/x"],
    rootDisk: { path: image, format: "qcow2", partition: 2 },
  });
  expect((await vm.exited).code).toBe(5);
  const calls = fs.readFileSync(log, "utf8");
  // libkrun's init boots from rootPath (it holds the agent); the disk is the workload's root.
  expect(calls).toContain(`krun_add_virtiofs3 7 /dev/root ${root} 0 1`);
  expect(calls).toContain(`krun_add_disk2 7 root ${image} 1 1`);
});

it("refuses a disk image root on a libkrun without krun_add_disk2", async () => {
  const noDisk = path.join(packageRoot, "build/Release/libkrun-double-nonet.so");
  const image = path.join(tempDir(), "root.raw");
  fs.writeFileSync(image, "");
  const vm = VirtualMachine.start({
    backend: "libkrun", libkrunPath: noDisk, rootPath: tempDir(), command: ["/x"], rootDisk: { path: image, format: "raw" },
  });
  const err = await vm.exited.catch((e) => e);
  expect(err).toBeInstanceOf(LibkrunNotFoundError);
  expect(err.message).toMatch(/krun_add_disk2/);
  expect(fs.readFileSync(log, "utf8")).not.toContain("krun_start_enter");
});
