// Strict option schemas everywhere: an unknown or misspelt key is a
// ConfigError naming it (and the key that was meant), never a setting
// silently dropped; values krunbox cannot honour are refused up front.
import fs from "node:fs";
import path from "node:path";
import { expect, it } from "vitest";
import { bootVm, ConfigError, pullImage, Sandbox, SandboxStoppedError, VirtualMachine, Volume } from "../lib/index.js";
import { ExecChannel } from "../lib/sandbox/channel.js";
import { SandboxProcess } from "../lib/sandbox/process.js";
import { tempDir, vmProcesses } from "./helpers.js";

async function configError(attempt: () => unknown): Promise<ConfigError> {
  let err: unknown;
  try {
    await attempt();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(ConfigError);
  return err as ConfigError;
}

it("names an unknown key and the one that was meant, at every level, starting nothing", async () => {
  const before = vmProcesses().length;
  const dir = tempDir();
  const cases: [() => unknown, string][] = [
    [() => Sandbox.create({ volumes: [{ type: "bind", source: dir, target: "/x", readonly: true }] } as never), 'volumes[0].readonly: unknown option; did you mean "readOnly"?'],
    [() => Sandbox.create({ volumes: [{ type: "named", name: "v", target: "/x", ReadOnly: true }] } as never), 'volumes[0].ReadOnly: unknown option; did you mean "readOnly"?'],
    [() => Sandbox.create({ memoryMib: 512 } as never), 'memoryMib: unknown option; did you mean "memoryMiB"?'],
    [() => Sandbox.create({ image: { ref: "x", pullpolicy: "always" } } as never), 'image.pullpolicy: unknown option; did you mean "pullPolicy"?'],
    [() => Sandbox.create({ colour: "red" } as never), "colour: unknown option"],
    [() => bootVm({ command: ["/bin/true"], shares: [{ hostPath: dir, guestPath: "/x", readonly: true }] } as never), 'shares[0].readonly: unknown option; did you mean "readOnly"?'],
    [() => VirtualMachine.start({ command: [], cpu: 2 } as never), 'cpu: unknown option; did you mean "cpus"?'],
    [() => VirtualMachine.start({ command: [], vsock: [{ port: 5000, socketPath: "/tmp/s", listen: true, lisen: false }] } as never), 'vsock[0].lisen: unknown option; did you mean "listen"?'],
    [() => pullImage("alpine", { pullpolicy: "never" } as never), 'options.pullpolicy: unknown option; did you mean "pullPolicy"?'],
  ];
  for (const [attempt, message] of cases) expect((await configError(attempt)).message).toBe(message);
  expect(vmProcesses().length).toBe(before);
});

it("refuses values krunbox cannot honour, naming the field", async () => {
  const cases: [() => unknown, string][] = [
    [() => Sandbox.create({ workdir: "/work\nrm -rf /" }), "workdir"],
    [() => VirtualMachine.start({ command: [], workdir: "/a\u0000b" }), "workdir"],
    [() => VirtualMachine.start({ command: [], tmpfs: [{ guestPath: "/dev/shm", sizeMiB: 1 }] }), "tmpfs[0].guestPath"],
    [() => VirtualMachine.start({ command: [], shares: [{ hostPath: "/tmp", guestPath: "/sys" }] }), "shares[0].guestPath"],
    [() => Volume.create("labelled", { labels: 5 } as never), "labels"],
    [() => Volume.create("labelled", { labels: { "": "x" } }), 'labels[""]'],
    [() => pullImage("alpine", { maxUnpackedBytes: 0 }), "options.maxUnpackedBytes"],
  ];
  for (const [attempt, field] of cases) expect((await configError(attempt)).field).toBe(field);
  expect(fs.existsSync(path.join(process.env.KRUNBOX_HOME!, "volumes/labelled"))).toBe(false);

  const vol = await Volume.create("modes");
  expect((await configError(() => vol.fs.writeFile("/f", "x", { mode: "abc" as never }))).field).toBe("options.mode");
  expect((await configError(() => vol.fs.writeFile("/f", "x", { mode: 0o17777 }))).field).toBe("options.mode");
  await Volume.remove("modes");
});

it("makes an unknown signal name a ConfigError, not a TypeError", () => {
  const proc = new SandboxProcess(
    new ExecChannel(path.join(tempDir(), "nobody.sock")),
    { argv: ["true"], env: [], cwd: "/", user: "", timeoutMs: 0, stdin: false },
    () => undefined,
    async () => new SandboxStoppedError("no agent"),
  );
  expect(() => proc.kill("SIGFOO" as NodeJS.Signals)).toThrow(ConfigError);
  expect(() => proc.kill(65)).toThrow(/signal: unknown signal 65/);
  return proc.exited.catch(() => {});
});
