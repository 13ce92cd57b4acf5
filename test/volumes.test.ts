// Volumes on real VMs: bind, named and tmpfs; read-only held on the host
// against a guest that tries to defeat it; host-side access that never
// leaves a volume, whatever the guest put there.
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { expect, it } from "vitest";
import {
  ConfigError,
  FsError,
  PathEscapeError,
  Sandbox,
  Volume,
  VolumeExistsError,
  VolumeInUseError,
  VolumeNotFoundError,
} from "../lib/index.js";
import { listTree, runModule, tempDir, waitFor } from "./helpers.js";

const volumesDir = () => path.join(process.env.KRUNBOX_HOME!, "volumes");

it("creates, lists, inspects and removes named volumes", async () => {
  const vol = await Volume.create("crud", { labels: { team: "a" } });
  expect(vol.info).toMatchObject({ name: "crud", labels: { team: "a" } });
  expect(fs.existsSync(path.join(volumesDir(), "crud/volume.json"))).toBe(true);
  await expect(Volume.create("crud")).rejects.toBeInstanceOf(VolumeExistsError);
  await vol.fs.mkdir("/a/b", { recursive: true });
  await vol.fs.writeFile("/a/b/requirements.txt", "requests==2.28.0");
  expect(await vol.fs.readFile("/a/b/requirements.txt", "utf8")).toBe("requests==2.28.0");
  expect(await vol.fs.readdir("/a")).toEqual(["b"]);
  expect((await vol.fs.readdir("/a", { withFileTypes: true })).map((e) => [e.name, e.isDirectory()])).toEqual([["b", true]]);
  await vol.fs.rm("/a", { recursive: true });
  expect(await vol.fs.readdir("/")).toEqual([]);
  expect((await Volume.list()).map((v) => v.name)).toContain("crud");
  expect((await Volume.get("crud")).info.labels).toEqual({ team: "a" });
  await Volume.remove("crud");
  await expect(Volume.get("crud")).rejects.toBeInstanceOf(VolumeNotFoundError);
});

it("refuses invalid names and quotas, creating nothing", async () => {
  for (const name of ["a/b", "..", "", "x".repeat(65), ".hidden", "a..b", "sp ace"])
    await expect(Volume.create(name)).rejects.toMatchObject({ field: "name" });
  for (const quotaMiB of [0, 4, 1.5, -1]) await expect(Volume.create("quota", { quotaMiB })).rejects.toMatchObject({ field: "quotaMiB" });
  expect(fs.existsSync(path.join(volumesDir(), "quota"))).toBe(false);
});

it("enforces a volume quota outside the guest, for guests and host-side writes alike", async () => {
  const vol = await Volume.create("quota", { quotaMiB: 32 });
  const mounts = () => fs.readFileSync("/proc/mounts", "utf8").split("\n").filter((l) => l.includes(vol.info.path)).length;
  expect(mounts()).toBe(1);
  {
    await using sb = await Sandbox.create({ volumes: ["quota:/q", "quota:/q2:ro"] });
    const r = await sb.exec("sh", [
      "-c",
      [
        "df -k /q | tail -1 | awk '{print \"size\", $2}'",
        "dd if=/dev/zero of=/q/big bs=1M count=64 2>&1 | grep -o 'No space left on device'",
        "rm /q/big",
        "dd if=/dev/zero of=/q/again bs=1M count=20 2>/dev/null && echo space-back",
        "ls /q2",
      ].join("; "),
    ]);
    const size = Number(/size (\d+)/.exec(r.stdout)?.[1]) / 1024;
    expect(size).toBeGreaterThanOrEqual(32);
    expect(size).toBeLessThan(34);
    expect(r.stdout).toContain("No space left on device\nspace-back\nagain\n");
    // Host-side writes hit the same limit.
    await expect(vol.fs.writeFile("/host-big", Buffer.alloc(40 << 20))).rejects.toMatchObject({ code: "ENOSPC", syscall: "write" });
    await vol.fs.rm("/host-big", { force: true });
    // Changing the quota needs the volume unused.
    await expect(vol.setQuota(64)).rejects.toMatchObject({ code: "ERR_KRUNBOX_VOLUME_IN_USE" });
  }
  await expect(vol.setQuota(16)).rejects.toMatchObject({ field: "quotaMiB" }); // 20 MiB stored
  {
    // A sandbox that starts copies the host's mounts into its runner's
    // namespace, this volume's too: the resize must not leave it stale.
    await using bystander = await Sandbox.create();
    await vol.setQuota(64);
  }
  expect((await Volume.get("quota")).info.quotaMiB).toBe(64);
  {
    await using sb = await Sandbox.create({ volumes: ["quota:/q"] });
    const r = await sb.exec("sh", ["-c", "df -m /q | tail -1 | awk '{print $2}'; wc -c < /q/again"]);
    expect(r.stdout).toMatch(/^6[45]\n20971520\n$/);
  }
  await Volume.remove("quota");
  expect(mounts()).toBe(0);
});

it("ends with one volume when two processes create it at once", async () => {
  const script = `import { Volume } from ${JSON.stringify(path.resolve("dist/index.js"))};
try { await Volume.create("raced"); console.log("created"); } catch (e) { console.log(e.code); }`;
  const run = () => runModule(script);
  const results = (await Promise.all([run(), run(), run()])).sort();
  expect(results).toEqual(["ERR_KRUNBOX_VOLUME_EXISTS", "ERR_KRUNBOX_VOLUME_EXISTS", "created"]);
  expect(fs.readdirSync(volumesDir()).filter((n) => n.includes("raced"))).toEqual(["raced"]);
  await Volume.remove("raced");
});

it("mounts bind, named and tmpfs volumes, also written Docker-style", async () => {
  const src = tempDir();
  fs.writeFileSync(path.join(src, "main.py"), "print(1)");
  const data = tempDir();
  const cwd = process.cwd();
  process.chdir(path.dirname(src));
  try {
    await using sb = await Sandbox.create({
      volumes: [
        { type: "bind", source: `./${path.basename(src)}`, target: "/app/src", readOnly: true },
        { type: "named", name: "pip-cache", target: "/root/.cache/pip" },
        { type: "tmpfs", target: "/scratch", sizeMiB: 8 },
        `${data}:/data`,
        `${src}:/cfg:ro`,
        "pip-cache:/shared:ro",
      ],
    });
    const r = await sb.exec("sh", [
      "-c",
      [
        "cat /app/src/main.py /cfg/main.py; echo",
        "echo cached > /root/.cache/pip/wheel",
        "cat /shared/wheel",
        "echo nope > /shared/x || echo shared-ro",
        "echo out > /data/result",
        "df -m /scratch | tail -1 | awk '{print \"scratch-size\", $2}'",
        "dd if=/dev/zero of=/scratch/fill bs=1M count=20 2>&1 | grep -o 'No space left on device'",
      ].join("; "),
    ]);
    expect(r.stdout).toContain("print(1)print(1)");
    expect(r.stdout).toContain("cached\nshared-ro\n");
    expect(r.stdout).toContain("scratch-size 8\n");
    expect(r.stdout).toContain("No space left on device");
    expect(fs.readFileSync(path.join(data, "result"), "utf8")).toBe("out\n");
    expect(await (await Volume.get("pip-cache")).fs.readFile("/wheel", "utf8")).toBe("cached\n");
    // In use: removal is refused while the sandbox runs.
    await expect(Volume.remove("pip-cache")).rejects.toBeInstanceOf(VolumeInUseError);
  } finally {
    process.chdir(cwd);
  }
  // The tmpfs is gone with its sandbox; the named volume stays.
  await using again = await Sandbox.create({ volumes: [{ type: "tmpfs", target: "/scratch" }, "pip-cache:/p"] });
  expect((await again.exec("sh", ["-c", "ls /scratch | wc -l; cat /p/wheel"])).stdout).toBe("0\ncached\n");
  await again.stop();
  await Volume.remove("pip-cache");
});

// The share server lets the guest keep a file's page cache across opens
// while the file is unchanged (scripts/virtiofsd-keep-cache.patch): every
// host change must still show at the guest's next open.
it("shows the host's changes to a file at the guest's next open, after the guest cached it", async () => {
  const dir = tempDir();
  const file = path.join(dir, "data");
  const old = "A".repeat(1 << 20);
  fs.writeFileSync(file, old);
  fs.writeFileSync(path.join(dir, "grow"), "short");
  // Older than the two seconds within which a change is never trusted.
  await new Promise((r) => setTimeout(r, 2500));
  await using sb = await Sandbox.create({ volumes: [`${dir}:/vol`] });
  const digest = async (f: string) => (await sb.exec("md5sum", [f])).stdout.split(" ")[0];
  const md5 = (text: string) => crypto.createHash("md5").update(text).digest("hex");
  expect(await digest("/vol/data")).toBe(md5(old));
  expect(await digest("/vol/data")).toBe(md5(old)); // cached now
  // Rewritten in place, same size: only the timestamps tell.
  const fd = fs.openSync(file, "r+");
  fs.writeSync(fd, "B".repeat(4096), 0);
  fs.closeSync(fd);
  expect(await digest("/vol/data")).toBe(md5("B".repeat(4096) + old.slice(4096)));
  // Replaced by a new file (a rename, as editors and rsync do).
  fs.writeFileSync(`${file}.new`, "C".repeat(1 << 20));
  fs.renameSync(`${file}.new`, file);
  await new Promise((r) => setTimeout(r, 1100)); // the guest's name cache lasts 1 s
  expect(await digest("/vol/data")).toBe(md5("C".repeat(1 << 20)));
  // Changed (same size) right after the guest read it.
  expect((await sb.exec("cat", ["/vol/grow"])).stdout).toBe("short");
  fs.writeFileSync(path.join(dir, "grow"), "SHORT");
  fs.writeFileSync(path.join(dir, "grow"), "sHoRt");
  expect((await sb.exec("cat", ["/vol/grow"])).stdout).toBe("sHoRt");
});

// `readOnly` is the one spelling (`readonly` is refused, below): before,
// `readOnly: true` was ignored and the folder mounted read-write.
it("holds read-only on the host against a guest that tries everything", async () => {
  const ro = tempDir();
  fs.mkdirSync(path.join(ro, "dir"));
  fs.writeFileSync(path.join(ro, "file"), "original");
  const before = snapshot(ro);
  await using sb = await Sandbox.create({ volumes: [{ type: "bind", source: ro, target: "/ro", readOnly: true }] });
  const attempts = [
    "echo x > /ro/file",
    "echo x >> /ro/file",
    "touch /ro/new",
    "mkdir /ro/newdir",
    "rm /ro/file",
    "rmdir /ro/dir",
    "mv /ro/file /ro/moved",
    "chmod 777 /ro/file",
    "chown 1:1 /ro/file",
    "truncate -s 0 /ro/file",
    "ln /ro/file /ro/hardlink",
    "ln -s /etc/passwd /ro/symlink",
    "touch -d 2000-01-01 /ro/file",
    // root in the guest may remount; the host mount stays read-only
    "mount -o remount,rw /ro && echo x > /ro/file",
    // ...or mount the VM's whole virtio-fs tree again and write there
    "mkdir -p /tree && mount -t virtiofs krunbox /tree && echo x > /tree/shares/0/file",
    "mount -t virtiofs krunbox /tree; mount -o remount,rw /tree/shares/0 && touch /tree/shares/0/new",
  ];
  await expectEachFails(sb, attempts);
  expect(snapshot(ro)).toEqual(before);
});

it("binds single files, and holds a read-only file on the host against a guest that tries everything", async () => {
  const dir = tempDir();
  const ro = path.join(dir, "ro.conf");
  const rw = path.join(tempDir(), "rw.log");
  fs.writeFileSync(ro, "original");
  fs.writeFileSync(rw, "host\n");
  const before = snapshot(dir);
  await using sb = await Sandbox.create({
    volumes: [`${ro}:/etc/app/ro.conf:ro`, { type: "bind", source: rw, target: "/var/rw.log" }],
  });
  expect((await sb.exec("cat", ["/etc/app/ro.conf"])).stdout).toBe("original");
  expect((await sb.exec("sh", ["-c", "echo guest >> /var/rw.log"])).exitCode).toBe(0);
  expect(fs.readFileSync(rw, "utf8")).toBe("host\nguest\n");
  const attempts = [
    "echo x > /etc/app/ro.conf",
    "echo x >> /etc/app/ro.conf",
    "chmod 777 /etc/app/ro.conf",
    "chown 1:1 /etc/app/ro.conf",
    "truncate -s 0 /etc/app/ro.conf",
    "touch -d 2000-01-01 /etc/app/ro.conf",
    "rm /etc/app/ro.conf",
    "echo x > /tmp/other && mv /tmp/other /etc/app/ro.conf && grep -q x /etc/app/ro.conf",
    "mv /etc/app/ro.conf /etc/app/moved",
    // root in the guest may remount; the host mount stays read-only
    "mount -o remount,rw /etc/app/ro.conf && echo x > /etc/app/ro.conf",
    "mkdir -p /tree && mount -t virtiofs krunbox /tree && echo x > /tree/shares/0",
    "mount -t virtiofs krunbox /tree; mount -o remount,rw /tree/shares/0 && echo x > /tree/shares/0",
  ];
  await expectEachFails(sb, attempts);
  // Unmounted in the guest, the path is the guest's own copy-on-write file.
  await sb.exec("sh", ["-c", "umount /etc/app/ro.conf; echo guest-copy > /etc/app/ro.conf"]);
  expect(snapshot(dir)).toEqual(before);
});

it("keeps host-side volume access inside the volume, whatever links the guest makes", async () => {
  const vol = await Volume.create("hostile");
  const secret = path.join(tempDir(), "secret");
  fs.writeFileSync(secret, "host-secret");
  await using sb = await Sandbox.create({ volumes: ["hostile:/v"] });
  await sb.exec("sh", [
    "-c",
    [
      "mkdir -p /v/sub",
      `ln -s ${secret} /v/abs`,
      `ln -s ../../../../../../../..${secret} /v/rel`,
      "ln -s /proc/self/root/etc/passwd /v/magic",
      "ln -s / /v/rootlink",
      "ln -s ../.. /v/sub/up",
      "echo inside > /v/ok",
      "ln /v/ok /v/hard",
    ].join("; "),
  ]);
  expect(await vol.fs.readFile("/ok", "utf8")).toBe("inside\n");
  expect(await vol.fs.readFile("/hard", "utf8")).toBe("inside\n");
  for (const p of ["/abs", "/rel", "/magic", "/rootlink/etc/passwd", "/sub/up/x", `/rootlink${secret}`])
    await expect(vol.fs.readFile(p), p).rejects.toBeInstanceOf(PathEscapeError);
  await expect(vol.fs.writeFile("/abs", "overwritten")).rejects.toBeInstanceOf(PathEscapeError);
  await expect(vol.fs.readdir("/rootlink")).rejects.toBeInstanceOf(PathEscapeError);
  await expect(vol.fs.writeFile("/rootlink/tmp/planted", "x")).rejects.toBeInstanceOf(PathEscapeError);
  expect(fs.readFileSync(secret, "utf8")).toBe("host-secret");
  // rm removes the links themselves, never what they point at.
  await vol.fs.rm("/rootlink");
  await vol.fs.rm("/abs");
  expect(fs.readFileSync(secret, "utf8")).toBe("host-secret");

  // A guest racing to swap a folder for a symlink while the host reads.
  const racer = sb.spawn("sh", [
    "-c",
    `mkdir -p /v/race; echo safe > /v/race/f; while :; do mv /v/race /v/race.d; ln -s ${path.dirname(secret)} /v/race; rm /v/race; mv /v/race.d /v/race; done`,
  ]);
  await waitFor("the racing guest", () => fs.existsSync(path.join(vol.info.path, "race.d")) || undefined, 30_000);
  let safe = 0;
  for (let i = 0; i < 300; i++) {
    await new Promise((r) => setTimeout(r, 2));
    try {
      const text = await vol.fs.readFile("/race/secret", "utf8");
      throw new Error(`escaped: read ${text}`);
    } catch (err) {
      if (!(err instanceof PathEscapeError) && (err as FsError).code !== "ENOENT") throw err;
    }
    try {
      if ((await vol.fs.readFile("/race/f", "utf8")) === "safe\n") safe++;
    } catch {
      // mid-swap
    }
  }
  racer.kill("SIGKILL");
  await racer.exited;
  expect(safe).toBeGreaterThan(0);
  await sb.stop();
  await Volume.remove("hostile");
});

it("mounts 32 volumes of all kinds in one sandbox", async () => {
  const specs = Array.from({ length: 32 }, (_, i) => {
    if (i % 3 === 0) return { type: "tmpfs" as const, target: `/m/${i}`, sizeMiB: 1 };
    if (i % 3 === 1) return `multi-${i}:/m/${i}`;
    const d = tempDir();
    fs.writeFileSync(path.join(d, "id"), String(i));
    return { type: "bind" as const, source: d, target: `/m/${i}`, readOnly: i % 2 === 0 };
  });
  await using sb = await Sandbox.create({ volumes: specs });
  const r = await sb.exec("sh", ["-c", "for i in $(seq 0 31); do echo $i > /m/$i/w 2>/dev/null && echo w$i; done"]);
  const written = r.stdout.trim().split("\n");
  specs.forEach((s, i) => {
    const readOnly = typeof s === "object" && s.type === "bind" && s.readOnly;
    expect(written.includes(`w${i}`), `mount ${i}`).toBe(!readOnly);
  });
  await sb.stop();
  for (let i = 1; i < 32; i += 3) await Volume.remove(`multi-${i}`);
});

it("refuses bad volume input with the field named, creating nothing", async () => {
  const existing = tempDir();
  const cases: [unknown[], string][] = [
    [[{ type: "bind", source: "/no/such/folder", target: "/x" }], "volumes[0].source"],
    [[{ type: "bind", source: "/dev/null", target: "/x" }], "volumes[0].source"],
    [[{ type: "bind", source: existing, target: "relative" }], "volumes[0].target"],
    [[{ type: "tmpfs", target: "/" }], "volumes[0].target"],
    [[`${existing}:/x`, { type: "tmpfs", target: "/x" }], "volumes[1].target"],
    [[{ type: "named", name: "../evil", target: "/x" }], "volumes[0].name"],
    [["never-created:/a", { type: "bind", source: "/no/such", target: "/b" }], "volumes[1].source"],
    [["a:b:c:d"], "volumes[0]"],
    [[{ type: "nfs", target: "/x" }], "volumes[0].type"],
    [[{ type: "tmpfs", target: "/t", sizeMiB: 0 }], "volumes[0].sizeMiB"],
    [[{ type: "bind", source: existing, target: "/x", readonly: true }], "volumes[0].readonly"],
    [[{ type: "named", name: "n", target: "/x", ro: true }], "volumes[0].ro"],
    [[{ type: "tmpfs", target: "/proc" }], "volumes[0].target"],
    [[`${existing}:/sys/kernel`], "volumes[0].target"],
    [["never-created:/dev"], "volumes[0].target"],
    [[{ type: "tmpfs", target: "/a\nb" }], "volumes[0].target"],
  ];
  for (const [volumes, field] of cases) {
    const err = await Sandbox.create({ volumes: volumes as never }).catch((e) => e);
    expect(err, field).toBeInstanceOf(ConfigError);
    expect(err.field).toBe(field);
  }
  expect(fs.existsSync(path.join(volumesDir(), "never-created"))).toBe(false);
});

async function expectEachFails(sb: Sandbox, commands: string[]) {
  for (const cmd of commands) {
    const r = await sb.exec("sh", ["-c", cmd]);
    expect(r.exitCode, cmd).not.toBe(0);
  }
}

function snapshot(dir: string): string[] {
  return listTree(dir, (rel, st, full) => [
    `${rel} ${st.mode} ${st.uid}:${st.gid} ${st.size} ${st.mtimeMs}`,
    ...(st.isDirectory() ? [] : [fs.readFileSync(full, "utf8")]),
  ]);
}
