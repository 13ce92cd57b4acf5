// A real registry for image tests: Debian's docker-registry on 127.0.0.1,
// fed by skopeo from OCI layouts whose layers GNU tar makes from real folders.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { packageRoot } from "../lib/runtime.js";
import { tempDir, waitFor } from "./helpers.js";

export interface TestRegistry {
  host: string;
  storage: string;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** A registry; with `auth`, it requires those credentials (htpasswd, bcrypt). */
export async function startRegistry(auth?: { username: string; password: string }): Promise<TestRegistry> {
  const dir = tempDir("krunbox-registry-");
  const port = await freePort();
  const storage = path.join(dir, "data");
  let authConfig = "";
  if (auth) {
    fs.writeFileSync(path.join(dir, "htpasswd"), execFileSync("htpasswd", ["-Bbn", auth.username, auth.password]));
    authConfig = `auth:\n  htpasswd:\n    realm: krunbox-test\n    path: ${path.join(dir, "htpasswd")}\n`;
  }
  fs.writeFileSync(
    path.join(dir, "config.yml"),
    `version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: ${storage}\nhttp:\n  addr: 127.0.0.1:${port}\n${authConfig}`,
  );
  // setup.sh unpacks Debian's docker-registry into deps/debian.
  const unpacked = path.join(packageRoot, "deps/debian/root/usr/bin/docker-registry");
  const program = fs.existsSync(unpacked) ? unpacked : "docker-registry";
  const proc: ChildProcess = spawn(program, ["serve", path.join(dir, "config.yml")], { stdio: "ignore" });
  const host = `127.0.0.1:${port}`;
  let up = false;
  await waitFor("the registry", () => {
    if (!up) fetch(`http://${host}/v2/`).then((r) => (up = r.ok || r.status === 401), () => {});
    return up || undefined;
  }, 15_000);
  return {
    host,
    storage,
    stop: async () => {
      proc.kill("SIGTERM");
      await new Promise((r) => proc.once("exit", r));
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

const digestOf = (b: Buffer) => `sha256:${crypto.createHash("sha256").update(b).digest("hex")}`;

export interface LayerSpec {
  /** Builds the layer's folder; GNU tar archives it. */
  fill(dir: string): void;
}

/** An OCI layout with one image per platform; returns the layout folder and manifest digests. */
export function buildLayout(
  layers: LayerSpec[],
  config: { Env?: string[]; WorkingDir?: string },
  platforms: string[] = ["amd64"],
  compression: "gzip" | "zstd" = "gzip",
  tag = "1",
): { layout: string; manifests: Record<string, string> } {
  const layout = tempDir("krunbox-layout-");
  const blobs = path.join(layout, "blobs/sha256");
  fs.mkdirSync(blobs, { recursive: true });
  const put = (b: Buffer) => {
    const d = digestOf(b);
    fs.writeFileSync(path.join(blobs, d.slice(7)), b);
    return { digest: d, size: b.length };
  };
  const layerDescs = layers.map((layer) => {
    const dir = tempDir("krunbox-layer-");
    layer.fill(dir);
    const tar = execFileSync("tar", ["-C", dir, "--owner=0", "--group=0", "--numeric-owner", "-cf", "-", "."], { maxBuffer: 256 << 20 });
    const gz = execFileSync(compression, compression === "gzip" ? ["-n", "-c"] : ["-q", "-c"], { input: tar, maxBuffer: 256 << 20 });
    return { diffId: digestOf(tar), ...put(gz) };
  });
  const manifests: Record<string, string> = {};
  const entries = platforms.map((arch) => {
    const cfg = put(
      Buffer.from(
        JSON.stringify({
          architecture: arch,
          os: "linux",
          config,
          rootfs: { type: "layers", diff_ids: layerDescs.map((l) => l.diffId) },
        }),
      ),
    );
    const manifest = put(
      Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: "application/vnd.oci.image.manifest.v1+json",
          config: { mediaType: "application/vnd.oci.image.config.v1+json", ...cfg },
          layers: layerDescs.map((l) => ({ mediaType: `application/vnd.oci.image.layer.v1.tar+${compression}`, digest: l.digest, size: l.size })),
        }),
      ),
    );
    manifests[arch] = manifest.digest;
    return { mediaType: "application/vnd.oci.image.manifest.v1+json", ...manifest, platform: { os: "linux", architecture: arch } };
  });
  const index =
    platforms.length === 1
      ? { schemaVersion: 2, manifests: [{ ...entries[0], annotations: { "org.opencontainers.image.ref.name": tag } }] }
      : {
          schemaVersion: 2,
          manifests: [
            {
              mediaType: "application/vnd.oci.image.index.v1+json",
              ...put(Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json", manifests: entries }))),
              annotations: { "org.opencontainers.image.ref.name": tag },
            },
          ],
        };
  fs.writeFileSync(path.join(layout, "index.json"), JSON.stringify(index));
  fs.writeFileSync(path.join(layout, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  return { layout, manifests };
}

export function push(layout: string, target: string, creds?: { username: string; password: string }, tag = "1"): void {
  const auth = creds ? ["--dest-creds", `${creds.username}:${creds.password}`] : [];
  execFileSync("skopeo", ["copy", "--all", "--quiet", "--dest-tls-verify=false", ...auth, `oci:${layout}:${tag}`, `docker://${target}`], {
    stdio: ["ignore", "ignore", "inherit"],
  });
}
