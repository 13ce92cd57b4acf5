import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { expect, it } from "vitest";

const cli = path.join(import.meta.dirname, "../bin/krunbox.js");
const krunbox = (args: string[], env: NodeJS.ProcessEnv = process.env) =>
  spawnSync(process.execPath, [cli, ...args], { encoding: "utf8", timeout: 120_000, env });
const stackTrace = /^\s+at .+:\d+:\d+\)?$/m;

it("prints help on stdout with status 0, per command, and --version", () => {
  for (const args of [["--help"], ["run", "--help"], ["image", "pull", "--help"], ["volume", "--help"], ["help", "run"], ["doctor", "--help"], ["mcp", "--help"]]) {
    const r = krunbox(args);
    expect(r.status, args.join(" ")).toBe(0);
    expect(r.stdout, args.join(" ")).toMatch(/^Usage: krunbox/);
  }
  expect(krunbox(["run", "--help"]).stdout).toMatch(/--memory <MiB>[^]*--network <mode>[^]*--allow <host>[^]*--add-host <name:ip>[^]*-p, --publish/);
  expect(krunbox(["doctor", "--help"]).stdout).toMatch(/--boot/);
  expect(krunbox(["mcp", "--help"]).stdout).toMatch(/--allow-bind <dir\[:ro\]>[^]*--max-sandboxes <n>/);
  const version = JSON.parse(fs.readFileSync(path.join(import.meta.dirname, "../package.json"), "utf8")).version;
  expect(krunbox(["--version"])).toMatchObject({ status: 0, stdout: `${version}\n` });
});

it("answers usage errors with status 125 and a message naming the flag, never a stack trace", () => {
  // KRUNBOX_QEMU points nowhere: reaching the boot would fail differently.
  const env = { ...process.env, KRUNBOX_QEMU: "/nonexistent/qemu" };
  const cases: [string[], RegExp][] = [
    [["run", "--frobnicate", "--", "true"], /unknown option '--frobnicate'\nusage: krunbox run/],
    [["run", "--memory", "-5", "--", "true"], /^krunbox: --memory -5: .*64/],
    [["run", "--memory", "lots", "--", "true"], /--memory <MiB>' argument 'lots' is invalid/],
    [["run", "--cpus", "0", "--", "true"], /^krunbox: --cpus 0: /],
    [["run", "-u", "no body", "--", "true"], /^krunbox: -u 'no body': must be a user name or uid/],
    [["run", "-e", "=x", "--", "true"], /-e, --env <KEY=VALUE>' argument '=x' is invalid/],
    [["run", "--tmpfs", "/scratch:0", "--", "true"], /^krunbox: --tmpfs \/scratch:0: must be a positive whole number/],
    [["run", "--tmpfs", "/scratch:big", "--", "true"], /--tmpfs <dst\[:MiB\]>' argument '\/scratch:big' is invalid/],
    [["run", "-v", "/no/such/dir:/x", "--", "true"], /^krunbox: -v \/no\/such\/dir:\/x: \/no\/such\/dir does not exist on the host/],
    [["run", "-w", "relative", "--", "true"], /^krunbox: -w relative: must be an absolute/],
    [["run", "--network", "bogus", "--", "true"], /--network <mode>' argument 'bogus' is invalid. expected "public" or "none"/],
    [["run", "--network", "none", "--allow", "a.test", "--", "true"], /^krunbox: --allow gives the sandbox a network; drop --network none/],
    [["run", "--allow", "a.test", "--allow", "bad host!", "--", "true"], /^krunbox: --allow 'bad host!': "bad host!" is not a host name/],
    [["run", "--allow", "a.test", "--add-host", "a.test:nowhere", "--", "true"], /^krunbox: --add-host a.test:nowhere: "nowhere" is not an IP address/],
    [["run", "--add-host", "noip", "--", "true"], /--add-host <name:ip>' argument 'noip' is invalid. expected NAME:IP/],
    [["run", "-p", "8080:80", "-p", "nonsense", "--", "true"], /^krunbox: -p nonsense: "nonsense" must look like "HOST:GUEST"/],
    [["run"], /no command given\nusage: krunbox run/],
    [["image", "pull"], /missing required argument 'ref'\nusage: krunbox image pull/],
    [["volume", "create"], /missing required argument 'name'\nusage: krunbox volume create/],
    [["volume", "create", "v", "--quota", "1"], /^krunbox: --quota 1: /],
    [["frobnicate"], /unknown command 'frobnicate'/],
    [[], /^Usage: krunbox/],
  ];
  for (const [args, message] of cases) {
    const r = krunbox(args, env);
    expect(r.status, args.join(" ")).toBe(125);
    expect(r.stderr, args.join(" ")).toMatch(message);
    expect(r.stderr, args.join(" ")).not.toMatch(stackTrace);
    expect(r.stderr, args.join(" ")).not.toMatch(/memoryMiB|volumes\[|sizeMiB|quotaMiB|network\.|ports\[/);
  }
});

it("runs what follows the options as the command, as docker run does, and passes its status on", () => {
  const r = krunbox(["run", "-e", "A=1", "-e", "B", "-w", "/tmp", "sh", "-c", 'echo "$A$B $(pwd)"; ls -d -la /; exit 3'], { ...process.env, B: "2" });
  expect(r.stdout).toMatch(/^12 \/tmp\ndr.* \/\n$/);
  expect(r.status).toBe(3);
  expect(krunbox(["run", "ls", "-la", "/bin/sh"]).stdout).toMatch(/^lrwxrwxrwx .* \/bin\/sh -> /);
  expect(krunbox(["run", "--", "sh", "-c", "kill -9 $$"]).status).toBe(128 + 9);
});

it("reports a workdir or user the image lacks with status 125, naming the flag", () => {
  const noDir = krunbox(["run", "-w", "/nope", "--", "true"]);
  expect(noDir.status).toBe(125);
  expect(noDir.stderr).toMatch(/^krunbox: -w \/nope: workdir "\/nope" does not exist in the guest/);
  const noUser = krunbox(["run", "-u", "nosuchuser", "--", "true"]);
  expect(noUser.status).toBe(125);
  expect(noUser.stderr).toMatch(/^krunbox: -u nosuchuser: user "nosuchuser" is not in the image's \/etc\/passwd/);
});

it("says an uncached image is not in the cache", () => {
  const r = krunbox(["image", "rm", "alpine:3.20"]);
  expect(r.status).toBe(125);
  expect(r.stderr).toMatch(/alpine:3.20 is not in the cache/);
  expect(r.stderr).not.toMatch(/pullPolicy/);
});

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
  expect(r.stderr).toBe("");
  // Docker's rule: a source without "/" or "." first names a volume, made on first use; say so.
  const implicit = run("run", "-v", "cli-implicit:/data", "-v", `${src}/in.txt:/in.txt:ro`, "--", "cat", "/in.txt");
  expect(implicit.stdout).toBe("from-host");
  expect(implicit.stderr).toMatch(/^krunbox: -v cli-implicit:\/data: created the named volume "cli-implicit" .*write \.\/cli-implicit to bind a folder/);
  expect(run("run", "-v", "cli-implicit:/data", "--", "true").stderr).toBe("");
  expect(run("volume", "ls").stdout).toMatch(/^cli-implicit\t-\t.*\tcreated on first mount\t\{\}$/m);
  expect(run("volume", "ls").stdout).toMatch(/^cli-vol\t20MiB\t.*\tvolume create\t\{"team":"a"\}$/m);
  expect(run("volume", "rm", "cli-implicit").status).toBe(0);
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
