// krunbox doctor: every piece, which copy is used, exit 0 whenever a
// sandbox can start (with or without /dev/kvm), and --boot.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { expect, it } from "vitest";
import { Sandbox } from "../lib/index.js";
import { runtimeDir } from "../lib/vm/runtime.js";
import { pathWithout, tempDir, vmProcesses, waitFor, withoutKvm } from "./helpers.js";

const cli = path.join(import.meta.dirname, "../bin/krunbox.js");
const doctor = (args: string[] = [], env: NodeJS.ProcessEnv = process.env) =>
  spawnSync(process.execPath, [cli, "doctor", ...args], { encoding: "utf8", timeout: 120_000, env });

it("checks every piece and says which copy it uses", () => {
  const r = doctor();
  const rt = runtimeDir();
  expect(r.stdout).toMatch(/^ok {4}qemu: \S*qemu-system-x86_64 \(system, on PATH\): QEMU emulator version \d/m);
  expect(r.stdout).toContain(`ok    virtiofsd: ${path.join(rt, "virtiofsd")} (bundled): virtiofsd 1.`);
  expect(r.stdout).toContain(`ok    vsock daemon: ${path.join(rt, "vhost-device-vsock")} (bundled): vhost-device-vsock `);
  expect(r.stdout).toContain(`ok    kernel: ${path.join(rt, "vmlinux.gz")} (bundled): Linux `);
  expect(r.stdout).toContain(`ok    initramfs: ${path.join(rt, "initramfs.cpio")} (bundled)`);
  for (const piece of ["addon", "runner", "default image", "libkrun"]) expect(r.stdout).toMatch(new RegExp(`^ok {4}${piece}: `, "m"));
  expect(r.stdout).toMatch(/^(ok {4}|WARN {2})kvm: /m);
  expect(r.stdout).not.toMatch(/^FAIL/m);
  expect(r.status).toBe(0);
});

it("boots a sandbox with --boot, also without /dev/kvm (a warning: QEMU uses TCG)", () => {
  const r = spawnSync(...withoutKvm(process.execPath, cli, "doctor", "--boot"), { encoding: "utf8", timeout: 120_000 });
  expect(r.stdout).toMatch(/^WARN  kvm: \/dev\/kvm does not exist, so QEMU runs guests under TCG/m);
  expect(r.stdout).toMatch(/^ok {4}boot: a sandbox started and ran `uname -r` \(\S+\) in \d+\.\d s, accelerator tcg$/m);
  expect(r.stdout).not.toMatch(/^FAIL/m);
  expect(r.status).toBe(0);
});

it("fails, with the install command, when QEMU is missing", () => {
  const bin = pathWithout(path.join(tempDir(), "bin"), (name) => name.startsWith("qemu-system"));
  const r = doctor([], { ...process.env, PATH: bin });
  expect(r.stdout).toMatch(/^FAIL  qemu: qemu-system-x86_64 not found\. Install it: Debian\/Ubuntu `apt-get install qemu-system-x86`/m);
  expect(r.status).toBe(1);
});

it("uses system copies named by KRUNBOX_VIRTIOFSD and KRUNBOX_VSOCK_DAEMON, and refuses a C virtiofsd", async () => {
  const dir = tempDir();
  for (const name of ["virtiofsd", "vhost-device-vsock"]) fs.copyFileSync(path.join(runtimeDir(), name), path.join(dir, name));
  fs.chmodSync(path.join(dir, "virtiofsd"), 0o755);
  fs.chmodSync(path.join(dir, "vhost-device-vsock"), 0o755);
  const env = { ...process.env, KRUNBOX_VIRTIOFSD: path.join(dir, "virtiofsd"), KRUNBOX_VSOCK_DAEMON: path.join(dir, "vhost-device-vsock") };
  const r = doctor([], env);
  expect(r.stdout).toContain(`ok    virtiofsd: ${env.KRUNBOX_VIRTIOFSD} (system, from KRUNBOX_VIRTIOFSD): virtiofsd 1.`);
  expect(r.stdout).toContain(`ok    vsock daemon: ${env.KRUNBOX_VSOCK_DAEMON} (system, from KRUNBOX_VSOCK_DAEMON)`);
  expect(r.status).toBe(0);

  // A sandbox really runs them.
  const saved = { ...process.env };
  Object.assign(process.env, { KRUNBOX_VIRTIOFSD: env.KRUNBOX_VIRTIOFSD, KRUNBOX_VSOCK_DAEMON: env.KRUNBOX_VSOCK_DAEMON });
  try {
    await using sb = await Sandbox.create();
    expect((await sb.exec("true")).exitCode).toBe(0);
    const exes = await waitFor("the daemons", () => {
      const found = vmProcesses()
        .filter((p) => p.comm === "virtiofsd" || p.comm.startsWith("vhost-device-vs"))
        .map((p) => fs.readlinkSync(`/proc/${p.pid}/exe`));
      return found.length >= 2 && found;
    });
    expect(exes).toEqual(expect.arrayContaining([env.KRUNBOX_VIRTIOFSD, env.KRUNBOX_VSOCK_DAEMON]));
  } finally {
    process.env = saved;
  }

  // Debian 12's C virtiofsd (QEMU 7.2) is refused with a remedy.
  const c = "/usr/lib/qemu/virtiofsd";
  if (fs.existsSync(c)) {
    const refused = doctor([], { ...process.env, KRUNBOX_VIRTIOFSD: c });
    expect(refused.stdout).toMatch(/^FAIL  virtiofsd: KRUNBOX_VIRTIOFSD is set to \/usr\/lib\/qemu\/virtiofsd \(virtiofsd version 7\..*\), which is not the Rust virtiofsd/m);
    expect(refused.status).toBe(1);
  }
});
