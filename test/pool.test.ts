// The warm pool on real VMs: hand-out, refill, volumes attached to running
// sandboxes (read-only held on the host), close, errors, no leaks.
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError, GuestSetupError, Sandbox, SandboxCrashedError, SandboxRegistry, SandboxStoppedError, Volume } from "../lib/index.js";
import { runDirEntries, tempDir, vmProcesses, waitFor } from "./helpers.js";

afterAll(async () => {
  await waitFor("VM processes to end", () => vmProcesses().length === 0 || undefined, 20_000);
  expect(runDirEntries().filter((e) => e.startsWith("vm-"))).toEqual([]);
});

describe("a pool of 2", () => {
  let pool: SandboxRegistry;
  const handedOut: Sandbox[] = [];
  beforeAll(() => {
    pool = Sandbox.pool({ size: 2, env: { FROM: "pool" } });
  });
  afterAll(async () => {
    await Promise.all(handedOut.map((sb) => sb.stop()));
    await pool.close();
  });

  it("hands out booted sandboxes, never the same one twice, and refills", async () => {
    await waitFor("the pool to fill", () => pool.idle === 2 || undefined, 60_000);
    // Four at once from two idle: two at once, two as replacements boot.
    const boxes = await Promise.all([1, 2, 3, 4].map(() => pool.acquire()));
    handedOut.push(...boxes);
    expect(new Set(boxes).size).toBe(4);
    for (const sb of boxes) expect(sb.state).toBe("running");
    const marks = await Promise.all(boxes.map((sb, i) => sb.exec("sh", ["-c", `echo ${i} > /tmp/mark; cat /tmp/mark; echo $FROM`])));
    marks.forEach((r, i) => expect(r.stdout).toBe(`${i}\npool\n`));
    await waitFor("the pool to refill", () => pool.idle === 2 || undefined, 60_000);
    const next = await pool.acquire({ env: { FROM: "caller", MORE: "x" } });
    handedOut.push(next);
    expect(boxes).not.toContain(next);
    expect((await next.exec("sh", ["-c", "echo $FROM $MORE; cat /tmp/mark 2>&1 || true"])).stdout).toMatch(/^caller x\n.*No such file/);
  });

  it("attaches volumes to the running sandbox at acquire time: bind, named, tmpfs", async () => {
    const rw = tempDir();
    const ro = tempDir();
    fs.writeFileSync(path.join(ro, "file"), "original");
    fs.mkdirSync(path.join(ro, "dir"));
    const named = `pool-${process.pid}`;
    const sb = await pool.acquire({
      volumes: [`${rw}:/work`, { type: "bind", source: ro, target: "/ro", readOnly: true }, `${named}:/cache`, { type: "tmpfs", target: "/scratch", sizeMiB: 8 }],
    });
    handedOut.push(sb);
    const r = await sb.exec("sh", ["-c", "cat /ro/file; echo out > /work/new; echo c > /cache/c; df -m /scratch | tail -1"]);
    expect(r.stdout).toMatch(/^original.*\s8\s.*\/scratch/s);
    expect(fs.readFileSync(path.join(rw, "new"), "utf8")).toBe("out\n");
    expect(fs.readFileSync(path.join((await Volume.get(named)).info.path, "c"), "utf8")).toBe("c\n");
    // A host write shows in the guest.
    fs.writeFileSync(path.join(rw, "from-host"), "host");
    expect((await sb.exec("cat", ["/work/from-host"])).stdout).toBe("host");
    // sb.fs sees them, and watches the host side of the attached folder too.
    expect(await sb.fs.readFile("/ro/file", "utf8")).toBe("original");
    // A named volume in use is held.
    await expect(Volume.remove(named)).rejects.toMatchObject({ code: "ERR_KRUNBOX_VOLUME_IN_USE" });
    // Read-only is enforced on the host, whatever guest root does.
    const attempts = [
      "echo x > /ro/file",
      "touch /ro/new",
      "rm /ro/file",
      "rmdir /ro/dir",
      "chmod 777 /ro/file",
      "mount -o remount,rw /ro && echo x > /ro/file",
      "mkdir -p /tree && mount -t virtiofs krunbox /tree && echo x > /tree/attached/1/file",
      "mount -t virtiofs krunbox /tree; mount -o remount,rw /tree/attached/1 && touch /tree/attached/1/new",
    ];
    for (const cmd of attempts) expect((await sb.exec("sh", ["-c", cmd])).exitCode, cmd).not.toBe(0);
    expect(fs.readdirSync(ro).sort()).toEqual(["dir", "file"]);
    expect(fs.readFileSync(path.join(ro, "file"), "utf8")).toBe("original");
    await sb.stop();
    await Volume.remove(named);
  });

  it("attaches single files, read-only ones held on the host", async () => {
    const dir = tempDir();
    const [conf, log] = [path.join(dir, "app.conf"), path.join(dir, "app.log")];
    fs.writeFileSync(conf, "setting=1\n");
    fs.writeFileSync(log, "");
    const sb = await pool.acquire({ volumes: [`${conf}:/etc/app.conf:ro`, `${log}:/var/log/app.log`] });
    handedOut.push(sb);
    const r = await sb.sh("cat /etc/app.conf; echo line >> /var/log/app.log; echo x > /etc/app.conf || echo refused; mount -o remount,rw /etc/app.conf && echo x > /etc/app.conf");
    expect(r.stdout).toBe("setting=1\nrefused\n");
    expect(fs.readFileSync(log, "utf8")).toBe("line\n");
    expect(fs.readFileSync(conf, "utf8")).toBe("setting=1\n");
    expect(fs.readdirSync(dir).sort()).toEqual(["app.conf", "app.log"]);
    await sb.stop();
  });

  it("refuses bad acquire options with the field named, handing nothing out", async () => {
    const idle = pool.idle;
    await expect(pool.acquire({ volumes: [{ type: "bind", source: "/nonexistent-dir", target: "/x" }] })).rejects.toMatchObject({
      field: "volumes[0].source",
    });
    await expect(pool.acquire({ volumes: ["/tmp:relative"] })).rejects.toBeInstanceOf(ConfigError);
    await expect(pool.acquire({ env: { "A=B": "1" } })).rejects.toMatchObject({ field: "env.A=B" });
    await expect(pool.acquire({ volume: [] } as never)).rejects.toMatchObject({ field: "volume" });
    expect(pool.idle).toBe(idle);
  });
});

it("refuses to attach over a volume its sandboxes already have", async () => {
  const dir = tempDir();
  await using pool = Sandbox.pool({ size: 1, volumes: [`${dir}:/data`] });
  await expect(pool.acquire({ volumes: [`${dir}:/data`] })).rejects.toMatchObject({ field: "volumes[0].target" });
  expect(() => Sandbox.pool({ size: 0 })).toThrow(ConfigError);
  expect(() => Sandbox.pool({ size: 1, cpus: 0 })).toThrow(expect.objectContaining({ field: "cpus" }));
});

it("reports boots that fail, and keeps trying, never throwing into the void", async () => {
  const blank = path.join(tempDir(), "blank.raw");
  fs.writeFileSync(blank, "");
  fs.truncateSync(blank, 8 << 20);
  const pool = Sandbox.pool({ size: 1, image: { disk: blank } });
  const errors: Error[] = [];
  pool.on("refillError", (e) => errors.push(e));
  const err = await pool.acquire().catch((e) => e);
  expect(err).toBeInstanceOf(GuestSetupError);
  await waitFor("a retry", () => errors.length >= 2 || undefined, 60_000);
  expect(errors.every((e) => e instanceof GuestSetupError)).toBe(true);
  await pool.close();
  await expect(pool.acquire()).rejects.toBeInstanceOf(SandboxStoppedError);
});

it("replaces an idle sandbox whose VM dies, and says so", async () => {
  const qemus = () => vmProcesses().filter((p) => p.comm.startsWith("qemu"));
  const others = new Set(qemus().map((p) => p.pid));
  await using pool = Sandbox.pool({ size: 1 });
  const errors: Error[] = [];
  pool.on("refillError", (e) => errors.push(e));
  await waitFor("the pool to fill", () => pool.idle === 1 || undefined, 60_000);
  const mine = qemus().filter((p) => !others.has(p.pid));
  expect(mine).toHaveLength(1);
  process.kill(mine[0].pid, "SIGKILL");
  await waitFor("the death to be reported", () => errors.length === 1 || undefined, 20_000);
  expect(errors[0]).toBeInstanceOf(SandboxCrashedError);
  await waitFor("a replacement", () => pool.idle === 1 || undefined, 60_000);
  await using sb = await pool.acquire();
  expect((await sb.exec("echo", ["alive"])).stdout).toBe("alive\n");
});

it("stops every idle and booting sandbox on close, leaving nothing", async () => {
  const before = vmProcesses().length;
  const pool = Sandbox.pool({ size: 2 });
  await waitFor("a sandbox to boot", () => pool.idle >= 1 || undefined, 60_000);
  const waiting = pool.acquire().catch((e) => e);
  const sb = await waiting;
  // Closing while the replacement may still boot.
  await pool.close();
  expect(pool.idle).toBe(0);
  await pool.close(); // idempotent
  expect(sb.state).toBe("running"); // a handed-out sandbox is the caller's
  await sb.stop();
  await waitFor("VM processes to end", () => vmProcesses().length === before || undefined, 20_000);
});
