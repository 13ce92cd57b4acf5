// A registry client for the OCI distribution API (v2): manifests, image
// indexes, blobs; anonymous and credentialed token auth. Every blob and
// manifest fetched by digest is verified before anything is kept.
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { Dispatcher } from "undici";
import { DigestMismatchError, RegistryError } from "../errors.js";
import { isLocalRegistry, type ImageReference } from "./reference.js";

export const MEDIA = {
  ociIndex: "application/vnd.oci.image.index.v1+json",
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  dockerList: "application/vnd.docker.distribution.manifest.list.v2+json",
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
};
const MAX_MANIFEST_BYTES = 4 << 20;

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: { os?: string; architecture?: string; variant?: string };
}
export interface Manifest {
  digest: string;
  config: Descriptor;
  layers: Descriptor[];
}
export interface Credentials {
  username: string;
  password: string;
}
export interface RegistryOptions {
  credentials?: Credentials;
  /** Allow plain HTTP to a registry that is not on this machine. */
  insecure?: boolean;
  /** @internal Makes every connection, redirects and token servers included (lib/network/address.ts). */
  dispatcher?: Dispatcher;
}

export function sha256(data: Buffer): string {
  return `sha256:${crypto.createHash("sha256").update(data).digest("hex")}`;
}

// ~/.docker/config.json: { auths: { "host": { auth: base64("user:pass") } } }
function dockerConfigCredentials(registry: string): Credentials | undefined {
  try {
    const file = path.join(process.env.DOCKER_CONFIG ?? path.join(os.homedir(), ".docker"), "config.json");
    const auths = (JSON.parse(fs.readFileSync(file, "utf8")) as { auths?: Record<string, { auth?: string }> }).auths ?? {};
    const keys = registry === "docker.io" ? ["https://index.docker.io/v1/", "docker.io", "index.docker.io"] : [registry, `https://${registry}`];
    for (const key of keys) {
      const auth = auths[key]?.auth;
      if (!auth) continue;
      const text = Buffer.from(auth, "base64").toString("utf8");
      const colon = text.indexOf(":");
      if (colon > 0) return { username: text.slice(0, colon), password: text.slice(colon + 1) };
    }
  } catch {
    // no config, or not ours to read
  }
  return undefined;
}

function challengeParams(header: string): Record<string, string> {
  const params: Record<string, string> = {};
  for (const m of header.matchAll(/(\w+)="([^"]*)"/g)) params[m[1]] = m[2];
  return params;
}

export class Registry {
  readonly #ref: ImageReference;
  readonly #base: string;
  readonly #credentials: Credentials | undefined;
  readonly #dispatcher: Dispatcher | undefined;
  #authorization: string | undefined;

  constructor(ref: ImageReference, options: RegistryOptions = {}) {
    this.#ref = ref;
    const host = ref.registry === "docker.io" ? "registry-1.docker.io" : ref.registry;
    this.#base = `${isLocalRegistry(ref.registry) || options.insecure ? "http" : "https"}://${host}/v2/${ref.repository}`;
    this.#credentials = options.credentials ?? dockerConfigCredentials(ref.registry);
    this.#dispatcher = options.dispatcher;
  }

  /** fetch, with a RegistryError that says why a request failed (fetch itself says only "fetch failed"). */
  async #request(url: string | URL, headers: Record<string, string>): Promise<Response> {
    try {
      // `dispatcher` is undici's extension of fetch's options, which Node's fetch is.
      return await fetch(url, { headers, redirect: "follow", ...(this.#dispatcher ? { dispatcher: this.#dispatcher } : {}) } as RequestInit);
    } catch (err) {
      const cause = (err as Error).cause as Error | undefined;
      throw new RegistryError(`cannot reach ${this.#ref.registry}: ${cause?.message ?? (err as Error).message}`);
    }
  }

  async #fetch(url: string, accept?: string): Promise<Response> {
    const headers: Record<string, string> = accept ? { accept } : {};
    if (this.#authorization) headers.authorization = this.#authorization;
    const res = await this.#request(url, headers);
    if (res.status === 401 && !this.#authorization) {
      await res.arrayBuffer().catch(() => {});
      await this.#authenticate(res.headers.get("www-authenticate") ?? "");
      return this.#fetch(url, accept);
    }
    if (!res.ok) {
      await res.arrayBuffer().catch(() => {});
      const hint = res.status === 401 || res.status === 403 ? " (check the credentials, or `docker login` into ~/.docker/config.json)" : "";
      throw new RegistryError(`${this.#ref.canonical}: ${url} answered ${res.status} ${res.statusText}${hint}`);
    }
    return res;
  }

  async #authenticate(challenge: string) {
    const basic = this.#credentials
      ? `Basic ${Buffer.from(`${this.#credentials.username}:${this.#credentials.password}`).toString("base64")}`
      : undefined;
    if (/^basic/i.test(challenge)) {
      if (!basic) throw new RegistryError(`${this.#ref.registry} needs credentials: pass them, or \`docker login\``);
      this.#authorization = basic;
      return;
    }
    const p = challengeParams(challenge);
    if (!/^bearer/i.test(challenge) || !p.realm) throw new RegistryError(`${this.#ref.registry} asked for unknown authentication: ${challenge}`);
    const url = new URL(p.realm);
    if (p.service) url.searchParams.set("service", p.service);
    url.searchParams.set("scope", p.scope ?? `repository:${this.#ref.repository}:pull`);
    const res = await this.#request(url, basic ? { authorization: basic } : {});
    if (!res.ok) throw new RegistryError(`${this.#ref.registry}: token request answered ${res.status}${basic ? "" : " (anonymous)"}`);
    const body = (await res.json()) as { token?: string; access_token?: string };
    const token = body.token ?? body.access_token;
    if (!token) throw new RegistryError(`${this.#ref.registry}: token response without a token`);
    this.#authorization = `Bearer ${token}`;
  }

  async #json(reference: string): Promise<{ body: Buffer; digest: string; doc: Record<string, unknown> }> {
    const res = await this.#fetch(`${this.#base}/manifests/${reference}`, Object.values(MEDIA).join(", "));
    const body = Buffer.from(await res.arrayBuffer());
    if (body.length > MAX_MANIFEST_BYTES) throw new RegistryError(`${this.#ref.canonical}: manifest larger than 4 MiB`);
    const digest = sha256(body);
    if (reference.startsWith("sha256:") && digest !== reference) throw new DigestMismatchError("the manifest", reference, digest);
    return { body, digest, doc: JSON.parse(body.toString("utf8")) as Record<string, unknown> };
  }

  /** The linux/amd64 image manifest, going through an index if there is one. */
  async manifest(): Promise<Manifest> {
    let { digest, doc } = await this.#json(this.#ref.reference);
    if (Array.isArray(doc.manifests)) {
      const pick = (doc.manifests as Descriptor[]).find(
        (m) => m.platform?.os === "linux" && m.platform?.architecture === "amd64",
      );
      if (!pick) throw new RegistryError(`${this.#ref.canonical} has no linux/amd64 image`);
      ({ digest, doc } = await this.#json(pick.digest));
    }
    const config = doc.config as Descriptor | undefined;
    const layers = doc.layers as Descriptor[] | undefined;
    if (!config?.digest || !Array.isArray(layers)) throw new RegistryError(`${this.#ref.canonical}: unsupported manifest (${String(doc.mediaType)})`);
    return { digest, config, layers };
  }

  /**
   * Downloads a blob to `target`, verifying its digest on the way; on a
   * mismatch nothing is left behind. `onBytes` reports progress.
   */
  async blob(desc: Descriptor, target: string, onBytes?: (done: number) => void): Promise<void> {
    const res = await this.#fetch(`${this.#base}/blobs/${desc.digest}`);
    if (!res.body) throw new RegistryError(`${desc.digest}: empty response`);
    const hash = crypto.createHash("sha256");
    const tmp = `${target}.part-${process.pid}-${crypto.randomBytes(4).toString("hex")}`;
    let done = 0;
    try {
      await pipeline(
        Readable.fromWeb(res.body as never),
        async function* (source: AsyncIterable<Buffer>) {
          for await (const chunk of source) {
            done += chunk.length;
            if (done > desc.size) throw new DigestMismatchError(desc.digest, `${desc.size} bytes`, `more bytes`);
            hash.update(chunk);
            onBytes?.(done);
            yield chunk;
          }
        },
        fs.createWriteStream(tmp, { mode: 0o600 }),
      );
      const actual = `sha256:${hash.digest("hex")}`;
      if (actual !== desc.digest) throw new DigestMismatchError(`blob ${desc.digest}`, desc.digest, actual);
      fs.renameSync(tmp, target);
    } finally {
      fs.rmSync(tmp, { force: true });
    }
  }
}
