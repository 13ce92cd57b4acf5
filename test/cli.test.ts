import { spawnSync } from "node:child_process";
import path from "node:path";
import { expect, it } from "vitest";

const cli = path.join(import.meta.dirname, "../bin/krunbox.js");

it("krunbox run streams output, forwards stdin and exits with the command's status", () => {
  const r = spawnSync(process.execPath, [cli, "run", "-e", "WHO=guest", "--", "sh", "-c", 'echo hello $WHO; cat; echo oops >&2; exit 4'], {
    input: "from stdin\n",
    encoding: "utf8",
    timeout: 120_000,
  });
  expect(r.stdout).toBe("hello guest\nfrom stdin\n");
  expect(r.stderr).toBe("oops\n");
  expect(r.status).toBe(4);
});

it("krunbox run rejects bad options with a message naming the field", () => {
  const r = spawnSync(process.execPath, [cli, "run", "--cpus", "0", "--", "true"], { encoding: "utf8", timeout: 60_000 });
  expect(r.status).toBe(125);
  expect(r.stderr).toMatch(/cpus/);
});

it("krunbox doctor checks the host and says what it found", () => {
  const r = spawnSync(process.execPath, [cli, "doctor"], { encoding: "utf8", timeout: 60_000 });
  expect(r.stdout).toMatch(/qemu backend: .*qemu-system-x86_64/);
  expect(r.stdout).toMatch(/kvm: /);
  expect(r.status).toBe(0);
});
