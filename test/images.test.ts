// OCI images from a real registry on 127.0.0.1 (Debian's docker-registry),
// pushed by skopeo from layouts built with GNU tar from real folders.
import { execFileSync, spawnSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import zlib from "node:zlib";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  DigestMismatchError,
  ImageInUseError,
  ImageNotFoundError,
  listImages,
  pullImage,
  removeImage,
  Sandbox,
  UnsafeLayerError,
  type PullProgress,
} from "../lib/index.js";
import { packageRoot, runtimePaths } from "../lib/vm/runtime.js";
import { runModule, tempDir } from "./helpers.js";
import { buildLayout, push, startRegistry } from "./fixtures/registry.mjs";

let registry: Awaited<ReturnType<typeof startRegistry>>;
beforeAll(async () => {
  registry = await startRegistry();
});
afterAll(() => registry?.stop());

const imagesDir = () => path.join(process.env.KRUNBOX_HOME!, "images");
const cachedImages = () => (fs.existsSync(path.join(imagesDir(), "oci")) ? fs.readdirSync(path.join(imagesDir(), "oci")) : []);

const base = {
  fill(dir: string) {
    fs.mkdirSync(path.join(dir, "bin"));
    fs.copyFileSync(path.join(runtimePaths().dir, "busybox"), path.join(dir, "bin/busybox"));
    fs.chmodSync(path.join(dir, "bin/busybox"), 0o755);
    for (const applet of ["sh", "ls", "cat", "pwd"]) fs.symlinkSync("busybox", path.join(dir, "bin", applet));
    fs.writeFileSync(path.join(dir, "keep"), "kept\n");
    fs.writeFileSync(path.join(dir, "gone"), "deleted by layer 2\n");
    fs.mkdirSync(path.join(dir, "opq"));
    fs.writeFileSync(path.join(dir, "opq/lower"), "hidden by layer 2\n");
    fs.linkSync(path.join(dir, "keep"), path.join(dir, "keep-hardlink"));
  },
};
const top = {
  fill(dir: string) {
    fs.writeFileSync(path.join(dir, ".wh.gone"), "");
    fs.mkdirSync(path.join(dir, "opq"));
    fs.writeFileSync(path.join(dir, "opq/.wh..wh..opq"), "");
    fs.writeFileSync(path.join(dir, "opq/upper"), "from layer 2\n");
  },
};

it("pulls a multi-layer image with whiteouts and runs a sandbox in it", async () => {
  const { layout } = buildLayout([base, top], { Env: ["FROM_IMAGE=yes", "PATH=/bin"], WorkingDir: "/opq" });
  await push(layout, `${registry.host}/team/app:1`);
  const progress: PullProgress[] = [];
  const image = await pullImage(`${registry.host}/team/app:1`, { onProgress: (p) => progress.push(p) });
  expect(progress.filter((p) => p.index >= 0 && p.bytesDone === p.bytesTotal).map((p) => p.index)).toEqual(expect.arrayContaining([0, 1]));
  expect(fs.readdirSync(image.rootfs).sort()).toEqual(["bin", "keep", "keep-hardlink", "opq"]);

  await using sb = await Sandbox.create({ image: `${registry.host}/team/app:1` });
  const r = await sb.exec("sh", ["-c", "pwd; echo $FROM_IMAGE; ls /opq; cat /keep /keep-hardlink; ls /gone 2>&1 || true"]);
  expect(r.stdout).toMatch(/^\/opq\nyes\nupper\nkept\nkept\n.*No such file/s);
  // Cached: a second sandbox does not pull again.
  const again = await pullImage(`${registry.host}/team/app:1`, { pullPolicy: "never" });
  expect(again.digest).toBe(image.digest);
});

it("picks linux/amd64 from an index with several platforms", async () => {
  const { layout, manifests } = buildLayout([base], {}, ["arm64", "amd64"]);
  await push(layout, `${registry.host}/team/multi:1`);
  const image = await pullImage(`${registry.host}/team/multi:1`);
  expect(image.digest).toBe(manifests.amd64);
});

it("unpacks zstd layers", async () => {
  const { layout } = buildLayout([base, top], {}, ["amd64"], "zstd");
  await push(layout, `${registry.host}/team/zstd:1`);
  const image = await pullImage(`${registry.host}/team/zstd:1`);
  expect(fs.readdirSync(image.rootfs).sort()).toEqual(["bin", "keep", "keep-hardlink", "opq"]);
  expect(fs.readdirSync(path.join(image.rootfs, "opq"))).toEqual(["upper"]);
});

it("survives two processes pulling the same image at once", async () => {
  const { layout } = buildLayout([base], {});
  await push(layout, `${registry.host}/team/race:1`);
  const script = `import { pullImage } from ${JSON.stringify(path.resolve("dist/index.js"))};
const i = await pullImage(${JSON.stringify(`${registry.host}/team/race:1`)}); console.log(i.digest);`;
  const run = () => runModule(script);
  const [a, b] = await Promise.all([run(), run()]);
  expect(a).toMatch(/^sha256:/);
  expect(b).toBe(a);
  const image = await pullImage(`${registry.host}/team/race:1`, { pullPolicy: "never" });
  expect(fs.readFileSync(path.join(image.rootfs, "keep"), "utf8")).toBe("kept\n");
  expect(fs.readdirSync(path.join(imagesDir(), "oci")).filter((d) => d.includes(".tmp"))).toEqual([]);
});

it("pulls from a registry that requires credentials, given directly or in ~/.docker/config.json", async () => {
  const creds = { username: "alice", password: "s3cret" };
  const secured = await startRegistry({ auth: creds });
  try {
    const { layout } = buildLayout([base], {});
    await push(layout, `${secured.host}/team/private:1`, creds);
    const ref = `${secured.host}/team/private:1`;
    await expect(pullImage(ref, { pullPolicy: "always" })).rejects.toThrow(/needs credentials/);
    await expect(pullImage(ref, { pullPolicy: "always", credentials: { ...creds, password: "wrong" } })).rejects.toThrow(/401/);
    expect((await pullImage(ref, { pullPolicy: "always", credentials: creds })).digest).toMatch(/^sha256:/);
    const dockerConfig = tempDir();
    fs.writeFileSync(
      path.join(dockerConfig, "config.json"),
      JSON.stringify({ auths: { [secured.host]: { auth: Buffer.from("alice:s3cret").toString("base64") } } }),
    );
    process.env.DOCKER_CONFIG = dockerConfig;
    try {
      expect((await pullImage(ref, { pullPolicy: "always" })).digest).toMatch(/^sha256:/);
    } finally {
      delete process.env.DOCKER_CONFIG;
    }
  } finally {
    await secured.stop();
  }
});

it("gets bearer tokens: anonymous for public repositories, with credentials for private ones", async () => {
  const creds = { username: "bob", password: "t0ken" };
  const secured = await startRegistry({ token: creds });
  try {
    const { layout } = buildLayout([base], {});
    await push(layout, `${secured.host}/public/app:1`, creds);
    await push(layout, `${secured.host}/private/app:1`, creds);
    expect((await pullImage(`${secured.host}/public/app:1`)).digest).toMatch(/^sha256:/); // anonymous token
    await expect(pullImage(`${secured.host}/private/app:1`)).rejects.toThrow(/401/);
    await expect(pullImage(`${secured.host}/private/app:1`, { credentials: { ...creds, password: "no" } })).rejects.toThrow(/token request answered 401/);
    expect((await pullImage(`${secured.host}/private/app:1`, { credentials: creds })).digest).toMatch(/^sha256:/);
  } finally {
    await secured.stop();
  }
});

it("fails cleanly on a corrupted blob and caches nothing", async () => {
  const { layout } = buildLayout([{ fill: (d) => fs.writeFileSync(path.join(d, "f"), crypto.randomBytes(64 * 1024)) }], {});
  await push(layout, `${registry.host}/team/corrupt:1`);
  // Flip bytes in the registry's copy of the layer.
  const index = JSON.parse(fs.readFileSync(path.join(layout, "index.json"), "utf8"));
  const manifest = JSON.parse(fs.readFileSync(path.join(layout, "blobs/sha256", index.manifests[0].digest.slice(7)), "utf8"));
  const hex = manifest.layers[0].digest.slice(7);
  const blob = path.join(registry.storage, "docker/registry/v2/blobs/sha256", hex.slice(0, 2), hex, "data");
  const data = fs.readFileSync(blob);
  data[data.length - 10] ^= 0xff;
  fs.writeFileSync(blob, data);
  const before = cachedImages();
  await expect(pullImage(`${registry.host}/team/corrupt:1`)).rejects.toBeInstanceOf(DigestMismatchError);
  expect(cachedImages()).toEqual(before);
  expect(fs.readdirSync(path.join(imagesDir(), "blobs/sha256")).filter((f) => f.includes(".part"))).toEqual([]);
});

it("refuses a layer whose tar climbs out with ../", async () => {
  const outside = tempDir();
  const { layout } = buildLayout([{ fill: (d) => fs.writeFileSync(path.join(d, "ok"), "x") }], {});
  // Replace the layer with one holding "../escaped" (GNU tar keeps it with -P).
  const work = path.join(outside, "a/b");
  fs.mkdirSync(work, { recursive: true });
  fs.writeFileSync(path.join(outside, "a/escaped"), "evil");
  const tar = execFileSync("tar", ["-C", work, "-P", "-cf", "-", "../escaped"]);
  expect(tar.includes(Buffer.from("../escaped"))).toBe(true);
  const gz = execFileSync("gzip", ["-n", "-c"], { input: tar });
  retargetLayer(layout, gz);
  await push(layout, `${registry.host}/team/evil:1`);
  const before = cachedImages();
  await expect(pullImage(`${registry.host}/team/evil:1`)).rejects.toBeInstanceOf(UnsafeLayerError);
  expect(cachedImages()).toEqual(before);
  expect(fs.existsSync(path.join(imagesDir(), "escaped"))).toBe(false);
});

it("unpacks sparse files as GNU tar writes them (--sparse, and pax 0.0, 0.1, 1.0), holes and the entries after them included", async () => {
  const src = tempDir();
  // Data at the start, in the middle of a hole, and past 4 segments (GNU's
  // old format then needs extension headers), then a hole to the end.
  fs.writeFileSync(path.join(src, "sparse"), "");
  const fd = fs.openSync(path.join(src, "sparse"), "r+");
  for (let i = 0; i < 6; i++) fs.writeSync(fd, `segment ${i}`, null, "utf8", i * 1_500_000 + (i ? 4321 : 0));
  fs.ftruncateSync(fd, 12 << 20);
  fs.closeSync(fd);
  fs.writeFileSync(path.join(src, "after"), "the entry after\n");
  const original = fs.readFileSync(path.join(src, "sparse"));
  const formats: [string, string[]][] = [
    ["gnu", ["--sparse"]],
    ["pax", ["--format=pax", "--sparse"]],
    ...(["0.0", "0.1"] as const).map((v): [string, string[]] => [`pax${v}`, ["--format=pax", "--sparse", `--sparse-version=${v}`]]),
  ];
  for (const [name, flags] of formats) {
    const tar = execFileSync("tar", ["-C", src, "--owner=0", "--group=0", "--numeric-owner", ...flags, "-cf", "-", "sparse", "after"]);
    expect(tar.length, name).toBeLessThan(64 << 10); // the holes are not in the archive
    const { layout } = buildLayout([base], {});
    retargetLayer(layout, execFileSync("gzip", ["-n", "-c"], { input: tar }));
    await push(layout, `${registry.host}/team/sparse-${name}:1`);
    const image = await pullImage(`${registry.host}/team/sparse-${name}:1`);
    const unpacked = path.join(image.rootfs, "sparse");
    expect(fs.readFileSync(unpacked).equals(original), name).toBe(true);
    expect(fs.statSync(unpacked).blocks * 512, name).toBeLessThan(1 << 20);
    expect(fs.readFileSync(path.join(image.rootfs, "after"), "utf8"), name).toBe("the entry after\n");
    expect(fs.readdirSync(image.rootfs).sort(), name).toEqual(["after", "sparse"]);
  }
});

it("refuses a layer with a corrupted tar header (checksum) and caches nothing", async () => {
  const { layout } = buildLayout([{ fill: (d) => (fs.writeFileSync(path.join(d, "a"), "a"), fs.writeFileSync(path.join(d, "b"), "b")) }], {});
  const work = tempDir();
  fs.writeFileSync(path.join(work, "a"), "first\n");
  fs.writeFileSync(path.join(work, "b"), "second\n");
  const tar = execFileSync("tar", ["-C", work, "-cf", "-", "a", "b"]);
  // The second header's name, "b" -> "c": the checksum no longer adds up.
  expect(tar[1024]).toBe("b".charCodeAt(0));
  tar[1024] = "c".charCodeAt(0);
  retargetLayer(layout, execFileSync("gzip", ["-n", "-c"], { input: tar }));
  await push(layout, `${registry.host}/team/corrupt:1`);
  const before = cachedImages();
  const err = await pullImage(`${registry.host}/team/corrupt:1`).catch((e) => e);
  expect(err).toBeInstanceOf(UnsafeLayerError);
  expect(err.message).toMatch(/checksum does not match/);
  expect(cachedImages()).toEqual(before);
});

it("manages the cache: ls, rm (refused while a sandbox runs on the image), prune; and the CLI", async () => {
  const { layout } = buildLayout([base], { Env: ["WHO=cli"], Cmd: ["cat", "/keep"] } as never);
  const ref = `${registry.host}/team/cli:1`;
  await push(layout, ref);
  const cli = (...args: string[]) =>
    spawnSync(process.execPath, [path.resolve("bin/krunbox.js"), ...args], { encoding: "utf8", timeout: 120_000, env: process.env });
  const pulled = cli("image", "pull", ref);
  expect(pulled.stdout).toMatch(new RegExp(`^${ref.replace(/[.]/g, "\\.")} sha256:[a-f0-9]{64}\n$`));
  expect(cli("image", "ls").stdout).toContain(ref);
  expect(cli("run", "--image", ref, "--", "sh", "-c", "echo $WHO; cat /keep").stdout).toBe("cli\nkept\n");
  expect(cli("run", "--image", ref).stdout).toBe("kept\n"); // the image's Cmd

  const sb = await Sandbox.create({ image: ref });
  expect(() => removeImage(ref)).toThrow(ImageInUseError);
  await sb.stop();
  expect(cli("image", "rm", ref).status).toBe(0);
  expect(listImages().map((i) => i.reference)).not.toContain(ref);
  expect(cli("image", "prune").stdout).toMatch(/^freed \d+\.\d MiB\n$/);
  expect(fs.readdirSync(path.join(imagesDir(), "blobs/sha256"))).toEqual([]);
});

it("runs python3 from a pulled Debian image", async () => {
  // setup.sh debootstraps this root (minbase + python3-minimal).
  const root = path.join(packageRoot, "deps/debian/python-root");
  const { layout } = buildLayout([{ dir: root }], { Env: ["PATH=/usr/local/bin:/usr/bin:/bin"] }, ["amd64"], "zstd");
  await push(layout, `${registry.host}/debian/python:3`);
  await using sb = await Sandbox.create({ image: `${registry.host}/debian/python:3` });
  const r = await sb.exec("python3", ["-c", "print(1+1)"]);
  expect(r).toMatchObject({ exitCode: 0, stdout: "2\n" });
}, 300_000);

it("never lets a symlink from one layer redirect a later layer's writes", async () => {
  const outside = tempDir();
  const { layout } = buildLayout(
    [
      { fill: (d: string) => fs.symlinkSync(outside, path.join(d, "link")) },
      { fill: (d: string) => (fs.mkdirSync(path.join(d, "link")), fs.writeFileSync(path.join(d, "link/pwned"), "x")) },
    ],
    {},
  );
  await push(layout, `${registry.host}/team/symlink:1`);
  const image = await pullImage(`${registry.host}/team/symlink:1`);
  expect(fs.readdirSync(outside)).toEqual([]);
  expect(fs.lstatSync(path.join(image.rootfs, "link")).isDirectory()).toBe(true);
  expect(fs.readdirSync(path.join(image.rootfs, "link"))).toEqual(["pwned"]);
});

it("pulls Docker schema 2 manifests too", async () => {
  const { layout } = buildLayout([base], { Env: ["KIND=docker"] });
  await push(layout, `${registry.host}/team/docker:1`, undefined, "1", "v2s2");
  const manifest = await (await fetch(`http://${registry.host}/v2/team/docker/manifests/1`, {
    headers: { accept: "application/vnd.docker.distribution.manifest.v2+json" },
  })).json();
  expect(manifest.mediaType).toBe("application/vnd.docker.distribution.manifest.v2+json");
  const image = await pullImage(`${registry.host}/team/docker:1`);
  expect(image.config.env).toEqual(["KIND=docker"]);
  expect(fs.readFileSync(path.join(image.rootfs, "keep"), "utf8")).toBe("kept\n");
});

it("pull policy never: an image not in the cache is an error", async () => {
  await expect(pullImage(`${registry.host}/team/absent:1`, { pullPolicy: "never" })).rejects.toBeInstanceOf(ImageNotFoundError);
});

// Swaps layer `layer` of a one-image layout for `gz`, fixing the digests.
function retargetLayer(layout: string, gz: Buffer, layer = 0) {
  const digest = (b: Buffer) => `sha256:${crypto.createHash("sha256").update(b).digest("hex")}`;
  const blobs = path.join(layout, "blobs/sha256");
  const index = JSON.parse(fs.readFileSync(path.join(layout, "index.json"), "utf8"));
  const manifest = JSON.parse(fs.readFileSync(path.join(blobs, index.manifests[0].digest.slice(7)), "utf8"));
  fs.writeFileSync(path.join(blobs, digest(gz).slice(7)), gz);
  manifest.layers[layer] = { ...manifest.layers[layer], digest: digest(gz), size: gz.length };
  const m = Buffer.from(JSON.stringify(manifest));
  fs.writeFileSync(path.join(blobs, digest(m).slice(7)), m);
  index.manifests[0] = { ...index.manifests[0], digest: digest(m), size: m.length };
  fs.writeFileSync(path.join(layout, "index.json"), JSON.stringify(index));
}

// One ustar header, as GNU tar writes it; numbers too large for octal use
// the GNU base-256 form (a uid of 2^40, a size of 20 GiB).
function tarHeader(name: string, { size = 0, uid = 0, type = "0" } = {}): Buffer {
  const h = Buffer.alloc(512);
  const num = (off: number, len: number, v: number) => {
    if (v < 8 ** (len - 1)) return void h.write(v.toString(8).padStart(len - 1, "0") + "\0", off, "latin1");
    h[off] = 0x80;
    for (let i = off + len - 1, x = BigInt(v); i > off; i--, x >>= 8n) h[i] = Number(x & 0xffn);
  };
  h.write(name, 0);
  num(100, 8, 0o644);
  num(108, 8, uid);
  num(116, 8, 0);
  num(124, 12, size);
  num(136, 12, 0);
  h.write(type, 156);
  h.write("ustar\0" + "00", 257, "latin1");
  h.fill(" ", 148, 156);
  const sum = h.reduce((a, b) => a + b, 0);
  h.write(sum.toString(8).padStart(6, "0") + "\0 ", 148, "latin1");
  return h;
}
const END_OF_ARCHIVE = Buffer.alloc(1024);

/** A gzip layer of one file of `size` zero bytes, compressed as it is made: megabytes that unpack to far more. */
async function zeroFileLayer(name: string, size: number): Promise<Buffer> {
  const gz = zlib.createGzip({ level: 9 });
  const out: Buffer[] = [];
  const done = new Promise((r) => gz.on("end", r));
  gz.on("data", (d: Buffer) => out.push(d));
  gz.write(tarHeader(name, { size }));
  const zeros = Buffer.alloc(1 << 20);
  for (let left = size; left > 0; left -= zeros.length) gz.write(zeros.subarray(0, Math.min(left, zeros.length)));
  gz.end(Buffer.concat([Buffer.alloc((512 - (size % 512)) % 512), END_OF_ARCHIVE]));
  await done;
  return Buffer.concat(out);
}

describe("hostile layers", () => {
  const leftovers = () => cachedImages().filter((d) => !before.includes(d));
  let before: string[];
  beforeEach(() => {
    before = cachedImages();
  });
  async function pushLayer(name: string, gz: Buffer): Promise<string> {
    const { layout } = buildLayout([{ fill: (d) => fs.writeFileSync(path.join(d, "ok"), "x") }], {});
    retargetLayer(layout, gz);
    await push(layout, `${registry.host}/hostile/${name}:1`);
    return `${registry.host}/hostile/${name}:1`;
  }

  it("stops a gzip bomb at maxUnpackedBytes, before writing it, and keeps nothing", async () => {
    const bomb = await zeroFileLayer("bomb", 256 << 20);
    expect(bomb.length).toBeLessThan(1 << 20); // a 256x bomb
    const err = await pullImage(await pushLayer("bomb", bomb), { maxUnpackedBytes: 64 << 20 }).catch((e) => e);
    expect(err).toBeInstanceOf(UnsafeLayerError);
    expect(err.message).toMatch(/maxUnpackedBytes \(67108864 bytes\) at tar entry "bomb"/);
    expect(leftovers()).toEqual([]);
    // The default bound (16 GiB) holds as well: a layer that claims 20 GiB.
    const claim = await pushLayer("claim", zlib.gzipSync(Buffer.concat([tarHeader("huge", { size: 20 * 2 ** 30 }), Buffer.alloc(4096)])));
    await expect(pullImage(claim)).rejects.toThrow(/maxUnpackedBytes \(17179869184 bytes\) at tar entry "huge"/);
    expect(leftovers()).toEqual([]);
  });

  it("stops unpacking before the cache's file system runs out of space", async () => {
    // Under the test run's base: global teardown unmounts it if this test fails.
    const small = fs.mkdtempSync(path.join(process.env.KRUNBOX_TEST_BASE!, "small-fs-"));
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=64m", "tmpfs", small]);
    const home = process.env.KRUNBOX_HOME;
    try {
      process.env.KRUNBOX_HOME = small;
      const ref = await pushLayer("disk", await zeroFileLayer("big", 100 << 20));
      const err = await pullImage(ref, { maxUnpackedBytes: 1 << 30 }).catch((e) => e);
      expect(err).toBeInstanceOf(UnsafeLayerError);
      expect(err.message).toMatch(/MiB free on the file system/);
      expect(fs.readdirSync(path.join(small, "images/oci"))).toEqual([]);
    } finally {
      process.env.KRUNBOX_HOME = home;
      execFileSync("umount", [small]);
    }
  });

  it("refuses a uid or gid past 2^32-2 with UnsafeLayerError", async () => {
    const tar = Buffer.concat([tarHeader("f", { size: 1, uid: 2 ** 40 }), Buffer.alloc(512, "x"), END_OF_ARCHIVE]);
    const ref = await pushLayer("uid", zlib.gzipSync(tar));
    await expect(pullImage(ref)).rejects.toThrow(UnsafeLayerError);
    await expect(pullImage(ref)).rejects.toThrow(/uid 1099511627776/);
    expect(leftovers()).toEqual([]);
  });

  it("refuses a write through a symlink that leads out with UnsafeLayerError", async () => {
    const outside = tempDir();
    const { layout } = buildLayout(
      [{ fill: (d: string) => fs.symlinkSync(outside, path.join(d, "link")) }, { fill: (d: string) => fs.writeFileSync(path.join(d, "x"), "x") }],
      {},
    );
    // Layer 2 holds only "link/pwned": no folder entry replaces the link first.
    const work = tempDir();
    fs.mkdirSync(path.join(work, "link"));
    fs.writeFileSync(path.join(work, "link/pwned"), "x");
    retargetLayer(layout, execFileSync("gzip", ["-n", "-c"], { input: execFileSync("tar", ["-C", work, "-cf", "-", "link/pwned"]) }), 1);
    await push(layout, `${registry.host}/hostile/through:1`);
    const err = await pullImage(`${registry.host}/hostile/through:1`).catch((e) => e);
    expect(err).toBeInstanceOf(UnsafeLayerError);
    expect(err.message).toMatch(/link\/pwned.*symlink/);
    expect(fs.readdirSync(outside)).toEqual([]);
    expect(leftovers()).toEqual([]);
  });
});
