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

it("krunbox run --allow/--add-host reaches a host server by name, and -p publishes a guest port", async () => {
  const { default: http } = await import("node:http");
  const { default: net } = await import("node:net");
  const { spawn } = await import("node:child_process");
  const server = http.createServer((req, res) => res.end(`cli ${req.url}\n`));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as import("node:net").AddressInfo).port;
  try {
    // Not spawnSync: this process serves the HTTP requests meanwhile.
    const child = spawn(process.execPath, [cli, "run", "--allow", `svc.test:${port}`, "--add-host", "svc.test:127.0.0.1", "--",
      "wget", "-qO-", `http://svc.test:${port}/named`]);
    let stdout = "";
    child.stdout.on("data", (d) => (stdout += d));
    expect(await new Promise((r) => child.on("exit", r))).toBe(0);
    expect(stdout).toBe("cli /named\n");
    const none = spawnSync(process.execPath, [cli, "run", "--network", "none", "--", "sh", "-c", "ls /sys/class/net"], { encoding: "utf8", timeout: 120_000 });
    expect(none.stdout).toBe("lo\n");
  } finally {
    server.close();
  }

  // A free host port for -p (bound and released; the runner binds it again).
  const probe = net.createServer();
  await new Promise<void>((r) => probe.listen(0, "127.0.0.1", r));
  const hostPort = (probe.address() as import("node:net").AddressInfo).port;
  await new Promise((r) => probe.close(r));
  const child = spawn(process.execPath, [cli, "run", "-p", `${hostPort}:8000`, "--", "sh", "-c", "echo hi-from-guest | nc -l -p 8000"]);
  const exited = new Promise<number | null>((r) => child.on("exit", r));
  let got = "";
  for (let i = 0; i < 300 && !got; i++) {
    got = await new Promise<string>((resolve) => {
      let data = "";
      const c = net.createConnection(hostPort, "127.0.0.1");
      c.on("data", (d) => (data += d)).on("error", () => resolve("")).on("close", () => resolve(data));
    });
    if (!got) await new Promise((r) => setTimeout(r, 200));
  }
  expect(got).toBe("hi-from-guest\n");
  expect(await exited).toBe(0);
});
