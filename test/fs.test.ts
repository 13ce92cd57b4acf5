// sb.fs on real VMs: Node's fs/promises semantics through the guest agent,
// as the sandbox's user, on the guest's view of paths.
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError, FsError, FsLimitError, Sandbox, type WatchEvent } from "../lib/index.js";
import { listTree, tempDir, vmProcesses, waitFor } from "./helpers.js";

const sha = (b: Buffer) => crypto.createHash("sha256").update(b).digest("hex");

describe("one sandbox", () => {
  let sb: Sandbox;
  let bind: string;
  let ro: string;
  let boundFile: string;
  beforeAll(async () => {
    bind = tempDir();
    ro = tempDir();
    boundFile = path.join(tempDir(), "host-name.conf");
    fs.writeFileSync(boundFile, "conf\n");
    fs.writeFileSync(path.join(ro, "kept"), "original");
    sb = await Sandbox.create({
      workdir: "/work",
      volumes: [
        { type: "bind", source: bind, target: "/work/w/vol" },
        { type: "bind", source: boundFile, target: "/work/w/app.conf" },
        { type: "bind", source: ro, target: "/ro", readOnly: true },
        { type: "tmpfs", target: "/small", sizeMiB: 1 },
      ],
    });
  });
  afterAll(async () => {
    await sb.stop();
  });

  it("round-trips empty, one-byte and 8 MiB binary files byte-exact", async () => {
    for (const data of [Buffer.alloc(0), Buffer.from([0xff]), crypto.randomBytes(8 << 20)]) {
      await sb.fs.writeFile("/tmp/rt", data);
      const back = await sb.fs.readFile("/tmp/rt");
      expect(back.length).toBe(data.length);
      expect(sha(back)).toBe(sha(data));
      // ...and what the guest itself sees
      expect((await sb.exec("sha256sum", ["/tmp/rt"])).stdout.split(" ")[0]).toBe(sha(data));
    }
    await sb.exec("sh", ["-c", "printf 'h\\303\\251' > /tmp/utf"]);
    expect(await sb.fs.readFile("/tmp/utf", "utf8")).toBe("hé");
    expect(await sb.fs.readFile("/tmp/utf", { encoding: "latin1" })).toBe("h\u00c3\u00a9");
    await sb.fs.writeFile("/tmp/u8", new Uint8Array([1, 2, 3]), { mode: 0o600 });
    expect((await sb.exec("stat", ["-c", "%a %s", "/tmp/u8"])).stdout).toBe("600 3\n");
  });

  it("lists, stats, makes, renames and removes like fs/promises, relative paths against the workdir", async () => {
    await sb.fs.mkdir("a/b/c", { recursive: true });
    await sb.fs.mkdir("a/b/c", { recursive: true }); // exists: fine
    await sb.fs.writeFile("a/file", "12345");
    await sb.exec("ln", ["-s", "file", "/work/a/link"]);
    expect((await sb.fs.readdir("/work/a")).sort()).toEqual(["b", "file", "link"]);
    const dirents = await sb.fs.readdir("a", { withFileTypes: true });
    const kinds = Object.fromEntries(dirents.map((d) => [d.name, [d.isFile(), d.isDirectory(), d.isSymbolicLink()]]));
    expect(kinds).toEqual({ b: [false, true, false], file: [true, false, false], link: [false, false, true] });
    const st = await sb.fs.stat("a/link");
    expect(st.isFile()).toBe(true);
    expect(st.size).toBe(5);
    expect(st.uid).toBe(0);
    expect(st.mtimeMs).toBeGreaterThan(Date.parse("2020-01-01"));
    expect((await sb.fs.lstat("a/link")).isSymbolicLink()).toBe(true);
    expect((await sb.fs.stat("/work/a/b")).isDirectory()).toBe(true);
    expect(await sb.fs.exists("a/file")).toBe(true);
    expect(await sb.fs.exists("a/nothing")).toBe(false);
    await sb.fs.rename("a/file", "a/b/moved");
    expect(await sb.fs.readFile("/work/a/b/moved", "utf8")).toBe("12345");
    await sb.fs.rm("a/link");
    await sb.fs.rm("a/nothing", { force: true });
    await sb.fs.rm("a", { recursive: true });
    expect((await sb.exec("ls", ["/work"])).stdout).not.toContain("a\n");
  });

  it("fails with Node's codes, path and syscall", async () => {
    await sb.exec("sh", ["-c", "mkdir -p /tmp/e/full /tmp/e/empty && touch /tmp/e/full/x /tmp/e/file"]);
    const cases: [string, () => Promise<unknown>, string, string][] = [
      ["ENOENT", () => sb.fs.readFile("/tmp/e/missing"), "open", "/tmp/e/missing"],
      ["ENOENT", () => sb.fs.rm("/tmp/e/missing"), "rm", "/tmp/e/missing"],
      ["ENOENT", () => sb.fs.stat("e/missing"), "stat", "e/missing"],
      ["EEXIST", () => sb.fs.mkdir("/tmp/e/full"), "mkdir", "/tmp/e/full"],
      ["EEXIST", () => sb.fs.writeFile("/tmp/e/file", "x", { flag: "wx" }), "open", "/tmp/e/file"],
      ["ENOTDIR", () => sb.fs.readdir("/tmp/e/file"), "scandir", "/tmp/e/file"],
      ["EISDIR", () => sb.fs.readFile("/tmp/e"), "read", "/tmp/e"],
      ["EISDIR", () => sb.fs.rm("/tmp/e/empty"), "rm", "/tmp/e/empty"],
      ["ENOTEMPTY", () => sb.fs.rename("/tmp/e/empty", "/tmp/e/full"), "rename", "/tmp/e/empty"],
      ["EROFS", () => sb.fs.writeFile("/ro/new", "x"), "open", "/ro/new"],
      ["EROFS", () => sb.fs.rm("/ro/kept"), "rm", "/ro/kept"],
      ["ENOSPC", () => sb.fs.writeFile("/small/big", Buffer.alloc(2 << 20)), "write", "/small/big"],
    ];
    for (const [code, op, syscall, p] of cases) {
      const err = await op().then(() => undefined, (e: unknown) => e);
      expect(err, `${code} ${p}`).toBeInstanceOf(FsError);
      expect(err, `${code} ${p}`).toMatchObject({ code, syscall, path: p });
      expect((err as Error).message).toMatch(new RegExp(`^${code}: .+, ${syscall} '${p}'`));
    }
    expect(fs.readFileSync(path.join(ro, "kept"), "utf8")).toBe("original");
    await expect(sb.fs.readFile("/tmp/e/file\0")).rejects.toBeInstanceOf(ConfigError);
  });

  it("bounds what readFile holds (a guest file that never ends)", async () => {
    const err = await sb.fs.readFile("/dev/zero", { maxBytes: 1 << 20 }).catch((e) => e);
    expect(err).toBeInstanceOf(FsLimitError);
    expect(err).toMatchObject({ limit: "maxBytes", path: "/dev/zero" });
    expect(await sb.fs.readFile("/tmp/rt", { maxBytes: 8 << 20 })).toHaveLength(8 << 20);
  });

  it("copies a folder tree with symlinks in and out", async () => {
    const src = path.join(tempDir(), "tree");
    fs.mkdirSync(path.join(src, "sub/deep"), { recursive: true });
    fs.writeFileSync(path.join(src, "a.txt"), "a");
    fs.writeFileSync(path.join(src, "empty"), "", { mode: 0o600 });
    fs.writeFileSync(path.join(src, "bin.dat"), crypto.randomBytes(300_000), { mode: 0o755 });
    fs.writeFileSync(path.join(src, "sub/deep/x.txt"), "x");
    fs.symlinkSync("sub/deep/x.txt", path.join(src, "link-rel"));
    fs.symlinkSync("/etc/hostname", path.join(src, "link-abs"));
    fs.symlinkSync("nowhere", path.join(src, "link-dangling"));
    fs.mkdirSync(path.join(src, "ro-dir"));
    fs.writeFileSync(path.join(src, "ro-dir/f"), "f");
    fs.chmodSync(path.join(src, "ro-dir"), 0o555);

    await sb.fs.copyIn(src, "/tmp/tree");
    const inGuest = await sb.exec("sh", [
      "-c",
      "cd /tmp/tree && find . | sort && for l in link-rel link-abs link-dangling; do readlink $l; done && cat link-rel && stat -c '%n %a' empty bin.dat ro-dir",
    ]);
    expect(inGuest.stdout).toContain("./sub/deep/x.txt\n");
    expect(inGuest.stdout).toContain("sub/deep/x.txt\n/etc/hostname\nnowhere\nx");
    expect(inGuest.stdout).toContain("empty 600\nbin.dat 755\nro-dir 555\n");

    const out = path.join(tempDir(), "nested/out");
    await sb.fs.copyOut("/tmp/tree", out);
    expect(snapshot(out)).toEqual(snapshot(src));
    // A single file too.
    await sb.fs.copyOut("/tmp/tree/bin.dat", path.join(out, "copy.dat"));
    expect(sha(fs.readFileSync(path.join(out, "copy.dat")))).toBe(sha(fs.readFileSync(path.join(src, "bin.dat"))));
    await sb.fs.copyIn(path.join(src, "a.txt"), "/tmp/single");
    expect(await sb.fs.readFile("/tmp/single", "utf8")).toBe("a");
  });

  it("copies a guest symlink that points outside as a link, never following it", async () => {
    const secret = path.join(tempDir(), "secret");
    fs.writeFileSync(secret, "host-secret");
    await sb.exec("sh", [
      "-c",
      `mkdir -p /tmp/evil && ln -s ${secret} /tmp/evil/abs && ln -s ../../../../../../${secret} /tmp/evil/rel && ln -s / /tmp/evil/root && echo ok > /tmp/evil/ok && mkfifo /tmp/evil/fifo`,
    ]);
    const out = path.join(tempDir(), "out");
    await sb.fs.copyOut("/tmp/evil", out);
    expect(fs.readlinkSync(path.join(out, "abs"))).toBe(secret);
    expect(fs.readlinkSync(path.join(out, "root"))).toBe("/");
    expect(fs.lstatSync(path.join(out, "rel")).isSymbolicLink()).toBe(true);
    expect(fs.readdirSync(out).sort()).toEqual(["abs", "ok", "rel", "root"]); // no FIFO on the host
    expect(fs.readFileSync(secret, "utf8")).toBe("host-secret");
    // Copying again over the links replaces them; nothing is written through them.
    await sb.exec("sh", ["-c", "rm /tmp/evil/abs && echo planted > /tmp/evil/abs"]);
    await sb.fs.copyOut("/tmp/evil", out);
    expect(fs.readFileSync(path.join(out, "abs"), "utf8")).toBe("planted\n");
    expect(fs.readFileSync(secret, "utf8")).toBe("host-secret");
  });

  it("watches changes made by exec, by sb.fs and by the host through a volume or a bound file", async () => {
    const inotifyCount = async () =>
      Number((await sb.exec("sh", ["-c", "ls -l /proc/[0-9]*/fd 2>/dev/null | grep -c inotify"])).stdout.trim());
    const before = await inotifyCount();
    sb.fs.watch("/work/w"); // as fs.promises.watch: nothing starts until it is iterated
    const ac = new AbortController();
    const events: WatchEvent[] = [];
    const has = (eventType: string, filename: string) => events.some((e) => e.eventType === eventType && e.filename === filename);
    const watching = (async () => {
      try {
        for await (const e of sb.fs.watch("w", { recursive: true, signal: ac.signal })) events.push(e);
      } catch (err) {
        return err;
      }
    })();
    // The watch is set up asynchronously: poke until it reports.
    await waitFor("the watch", async () => (await sb.fs.writeFile("/work/w/ready", "x"), has("rename", "ready") || has("change", "ready")));
    expect(await inotifyCount()).toBe(before + 1); // one, the iterated one

    await sb.exec("sh", ["-c", "cd /work/w && echo a > f && echo b >> f && mv f g && rm g && mkdir sub && echo c > sub/h"]);
    for (const [type, name] of [["rename", "f"], ["change", "f"], ["rename", "g"], ["rename", "sub"], ["rename", "sub/h"]] as const)
      await waitFor(`${type} ${name} from exec`, () => has(type, name));
    await sb.fs.writeFile("/work/w/sub/viafs", "x");
    await waitFor("an event from sb.fs", () => has("rename", "sub/viafs") || has("change", "sub/viafs"));
    fs.writeFileSync(path.join(bind, "from-host"), "x");
    await waitFor("an event from the host", () => has("rename", "vol/from-host") || has("change", "vol/from-host"));
    // A single bound file is watched on the host too, under its name in the guest.
    fs.appendFileSync(boundFile, "from-host\n");
    await waitFor("an event from the host on the bound file", () => has("change", "app.conf"));
    expect(events.some((e) => e.filename.includes("host-name"))).toBe(false);

    ac.abort();
    expect(await watching).toMatchObject({ name: "AbortError" });
    await waitFor("the guest watch to go", async () => (await inotifyCount()) === before);

    // Ending the loop stops it too.
    const poke = setInterval(() => void sb.fs.writeFile("/work/w/again", "x").catch(() => {}), 200);
    for await (const e of sb.fs.watch("/work/w")) {
      expect(e.filename).toBe("again");
      break;
    }
    clearInterval(poke);
    await waitFor("the guest watch to go", async () => (await inotifyCount()) === before);
  }, 120_000);

  it("serves concurrent fs calls and execs", async () => {
    const jobs: Promise<boolean>[] = [];
    for (let i = 0; i < 16; i++) {
      const data = crypto.randomBytes(50_000 + i);
      jobs.push(sb.fs.writeFile(`/tmp/c${i}`, data).then(async () => sha(await sb.fs.readFile(`/tmp/c${i}`)) === sha(data)));
    }
    for (let i = 0; i < 6; i++) jobs.push(sb.exec("sh", ["-c", `echo ${i}`]).then((r) => r.stdout === `${i}\n`));
    jobs.push(sb.fs.readdir("/tmp").then((names) => names.length > 0));
    // More calls at once than the guest has workers for: they wait their turn.
    for (let i = 0; i < 300; i++) jobs.push(sb.fs.stat("/tmp").then((st) => st.isDirectory()));
    expect(await Promise.all(jobs)).toEqual(jobs.map(() => true));
  });

  it("streams 256 MiB both ways with bounded host memory", async () => {
    const size = 256 << 20;
    const block = crypto.randomBytes(1 << 20);
    // Each MiB differs: the block with its index in front.
    function* blocks() {
      for (let i = 0; i < size >> 20; i++) {
        const b = Buffer.from(block);
        b.writeUInt32LE(i, 0);
        yield b;
      }
    }
    const expected = crypto.createHash("sha256");
    for (const b of blocks()) expected.update(b);
    const baseline = process.memoryUsage().rss;
    let peak = baseline;
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
    try {
      await pipeline(Readable.from(blocks()), sb.fs.createWriteStream("/work/w/vol/big"));
      expect(fs.statSync(path.join(bind, "big")).size).toBe(size);
      const got = crypto.createHash("sha256");
      await pipeline(sb.fs.createReadStream("/work/w/vol/big"), async function* (chunks) {
        for await (const c of chunks) got.update(c as Buffer);
      });
      expect(got.digest("hex")).toBe(expected.digest("hex"));
    } finally {
      clearInterval(sampler);
      fs.rmSync(path.join(bind, "big"), { force: true });
    }
    expect(peak - baseline).toBeLessThan(96 << 20);
  }, 180_000);
});

it("runs sb.fs and execs as the sandbox's user, so the guest kernel says EACCES", async () => {
  await using sb = await Sandbox.create({ user: "nobody" });
  expect((await sb.exec("id", ["-u"])).stdout).toBe("65534\n");
  await sb.exec("sh", ["-c", "echo s > /tmp/secret && chmod 600 /tmp/secret && mkdir -m 700 /tmp/private"], { user: "0" });
  await expect(sb.fs.readFile("/tmp/secret")).rejects.toMatchObject({ code: "EACCES", syscall: "open", path: "/tmp/secret" });
  await expect(sb.fs.writeFile("/tmp/private/x", "x")).rejects.toMatchObject({ code: "EACCES" });
  await expect(sb.fs.readdir("/tmp/private")).rejects.toMatchObject({ code: "EACCES", syscall: "scandir" });
  await sb.fs.writeFile("/tmp/mine", "x");
  expect((await sb.fs.stat("/tmp/mine")).uid).toBe(65534);
  await sb.stop();
  await expect(sb.fs.readFile("/tmp/mine")).rejects.toMatchObject({ code: "ERR_KRUNBOX_SANDBOX_STOPPED" });
  expect(vmProcesses()).toEqual([]);
});

// Names, types, modes, contents and link targets: what a copy must keep.
function snapshot(dir: string): string[] {
  return listTree(dir, (rel, st, full) => {
    if (st.isSymbolicLink()) return [`${rel} -> ${fs.readlinkSync(full)}`];
    const mode = (st.mode & 0o777).toString(8);
    return [st.isDirectory() ? `${rel}/ ${mode}` : `${rel} ${mode} ${sha(fs.readFileSync(full))}`];
  });
}
