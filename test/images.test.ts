// OCI images from a real registry on 127.0.0.1 (Debian's docker-registry),
// pushed by skopeo from layouts built with GNU tar from real folders.
import { execFileSync, spawnSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
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

// Swaps the only layer of a one-image layout for `gz`, fixing the digests.
function retargetLayer(layout: string, gz: Buffer) {
  const digest = (b: Buffer) => `sha256:${crypto.createHash("sha256").update(b).digest("hex")}`;
  const blobs = path.join(layout, "blobs/sha256");
  const index = JSON.parse(fs.readFileSync(path.join(layout, "index.json"), "utf8"));
  const manifest = JSON.parse(fs.readFileSync(path.join(blobs, index.manifests[0].digest.slice(7)), "utf8"));
  fs.writeFileSync(path.join(blobs, digest(gz).slice(7)), gz);
  manifest.layers[0] = { ...manifest.layers[0], digest: digest(gz), size: gz.length };
  const m = Buffer.from(JSON.stringify(manifest));
  fs.writeFileSync(path.join(blobs, digest(m).slice(7)), m);
  index.manifests[0] = { ...index.manifests[0], digest: digest(m), size: m.length };
  fs.writeFileSync(path.join(layout, "index.json"), JSON.stringify(index));
}
