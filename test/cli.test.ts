import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
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

it("krunbox run mounts volumes, and krunbox volume manages named ones", () => {
  const env = process.env;
  const run = (...args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: "utf8", timeout: 120_000, env });
  const src = fs.mkdtempSync(path.join(os.tmpdir(), "krunbox-cli-"));
  fs.writeFileSync(path.join(src, "in.txt"), "from-host");
  expect(run("volume", "create", "cli-vol", "--quota", "20", "--label", "team=a").stdout).toBe("cli-vol\n");
  const r = run("run", "-v", `${src}:/src:ro`, "-v", "cli-vol:/data", "--tmpfs", "/scratch:4", "--",
    "sh", "-c", "cat /src/in.txt; echo; echo kept > /data/f; df -m /scratch | tail -1 | awk '{print $2}'");
  expect(r.stdout).toBe("from-host\n4\n");
  expect(run("volume", "ls").stdout).toMatch(/^cli-vol\t20MiB\t.*\t\{"team":"a"\}$/m);
  expect(JSON.parse(run("volume", "inspect", "cli-vol").stdout)).toMatchObject({ name: "cli-vol", labels: { team: "a" } });
  expect(run("volume", "rm", "cli-vol").status).toBe(0);
  expect(run("volume", "inspect", "cli-vol").stderr).toMatch(/does not exist/);
});
