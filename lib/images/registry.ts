// A registry client for the OCI distribution API (v2): manifests, image
// indexes, blobs; anonymous and credentialed token auth. Every blob and
// manifest fetched by digest is verified before anything is kept.
import crypto from "node:crypto";
import fs from "node:fs";
import { pipeline } from "node:stream/promises";
import { DigestMismatchError, RegistryError } from "../errors.js";
import { dockerCredentials, type Credentials, type IdentityToken } from "./credentials.js";
import { droppedConnection, readBody, RegistryHttp, withRetries, type HttpResponse } from "./http.js";
import { isLocalRegistry, type ImageReference } from "./reference.js";
import type { HostConnectionCheck } from "../network/address.js";

export type { Credentials };

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
export interface RegistryOptions {
  /** Used instead of what ~/.docker/config.json has for the registry. */
  credentials?: Credentials;
  /** Allow plain HTTP to a registry that is not on this machine. */
  insecure?: boolean;
  /** @internal Judges every connection, redirects, token servers and proxied ones included (lib/images/http.ts). */
  checkConnection?: HostConnectionCheck;
}

export function sha256(data: Buffer): string {
  return `sha256:${crypto.createHash("sha256").update(data).digest("hex")}`;
}

function challengeParams(header: string): Record<string, string> {
  const params: Record<string, string> = {};
  for (const m of header.matchAll(/(\w+)="([^"]*)"/g)) params[m[1]] = m[2];
  return params;
}

const header = (res: HttpResponse, name: string) => [res.headers[name]].flat()[0] ?? "";

export class Registry {
  readonly #ref: ImageReference;
  readonly #base: string;
  readonly #http: RegistryHttp;
  // Looked up on the first 401 only: a credential helper may prompt or be slow.
  #credentials: Promise<Credentials | IdentityToken | undefined> | undefined;
  #authorization: string | undefined;
  // A bearer token the registry has accepted: a later 401 means it expired.
  #tokenAccepted = false;

  constructor(ref: ImageReference, options: RegistryOptions = {}) {
    this.#ref = ref;
    const host = ref.registry === "docker.io" ? "registry-1.docker.io" : ref.registry;
    this.#base = `${isLocalRegistry(ref.registry) || options.insecure ? "http" : "https"}://${host}/v2/${ref.repository}`;
    if (options.credentials) this.#credentials = Promise.resolve(options.credentials);
    this.#http = new RegistryHttp(options.checkConnection);
  }

  /** Closes the connections this registry opened. */
  close(): Promise<void> {
    return this.#http.close();
  }

  async #send(url: string, accept?: string): Promise<HttpResponse> {
    const headers: Record<string, string> = accept ? { accept } : {};
    if (this.#authorization) headers.authorization = this.#authorization;
    return this.#http.request(url, { headers });
  }

  // A response that is 2xx, after authenticating once on a 401 (again
  // when a bearer token that was accepted has expired mid-pull).
  async #fetch(url: string, accept?: string): Promise<HttpResponse> {
    let res = await this.#send(url, accept);
    if (res.statusCode === 401 && (!this.#authorization || this.#tokenAccepted)) {
      await res.body.dump();
      this.#authorization = undefined;
      this.#tokenAccepted = false;
      await this.#authenticate(header(res, "www-authenticate"));
      res = await this.#send(url, accept);
    }
    if (res.statusCode >= 300) {
      await res.body.dump();
      const hint = res.statusCode === 401 || res.statusCode === 403 ? " (check the credentials, or `docker login`)" : "";
      throw new RegistryError(`${this.#ref.canonical}: ${url} answered ${res.statusCode}${hint}`, res.statusCode === 401 || res.statusCode === 403 ? "auth" : "http");
    }
    if (this.#authorization?.startsWith("Bearer ")) this.#tokenAccepted = true;
    return res;
  }

  async #authenticate(challenge: string) {
    const credentials = await (this.#credentials ??= dockerCredentials(this.#ref.registry));
    const password = credentials && "password" in credentials ? credentials : undefined;
    const basic = password ? `Basic ${Buffer.from(`${password.username}:${password.password}`).toString("base64")}` : undefined;
    if (/^basic/i.test(challenge)) {
      if (!basic) throw new RegistryError(`${this.#ref.registry} needs credentials: pass them, or \`docker login\``, "auth");
      this.#authorization = basic;
      return;
    }
    const p = challengeParams(challenge);
    if (!/^bearer/i.test(challenge) || !p.realm) throw new RegistryError(`${this.#ref.registry} asked for unknown authentication: ${challenge}`, "auth");
    const scope = p.scope ?? `repository:${this.#ref.repository}:pull`;
    const url = new URL(p.realm);
    // An identity token is an OAuth2 refresh token: POSTed, as Docker does.
    const identityToken = credentials && "identityToken" in credentials ? credentials.identityToken : undefined;
    const form = new URLSearchParams({ grant_type: "refresh_token", refresh_token: identityToken ?? "", service: p.service ?? "", scope, client_id: "krunbox" });
    if (!identityToken) {
      if (p.service) url.searchParams.set("service", p.service);
      url.searchParams.set("scope", scope);
    }
    const res = await withRetries(() =>
      this.#http.request(
        url.href,
        identityToken
          ? { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: form.toString() }
          : { headers: basic ? { authorization: basic } : {} },
      ),
    );
    if (res.statusCode !== 200) {
      await res.body.dump();
      throw new RegistryError(`${this.#ref.registry}: token request answered ${res.statusCode}${credentials ? "" : " (anonymous)"}`, "auth");
    }
    let token: unknown;
    try {
      const body = JSON.parse((await readBody(res, url.href, MAX_MANIFEST_BYTES)).toString("utf8")) as { token?: unknown; access_token?: unknown };
      token = body.token ?? body.access_token;
    } catch (err) {
      if (!(err instanceof SyntaxError)) throw err;
    }
    if (typeof token !== "string" || !token) throw new RegistryError(`${this.#ref.registry}: the token service answered without a token`);
    this.#authorization = `Bearer ${token}`;
  }

  async #json(reference: string): Promise<{ body: Buffer; digest: string; doc: Record<string, unknown> }> {
    const url = `${this.#base}/manifests/${reference}`;
    const body = await withRetries(async () => readBody(await this.#fetch(url, Object.values(MEDIA).join(", ")), url, MAX_MANIFEST_BYTES));
    const digest = sha256(body);
    if (reference.startsWith("sha256:") && digest !== reference) throw new DigestMismatchError("the manifest", reference, digest);
    try {
      return { body, digest, doc: JSON.parse(body.toString("utf8")) as Record<string, unknown> };
    } catch {
      throw new RegistryError(`${this.#ref.canonical}: the manifest at ${url} is not JSON`);
    }
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
    // A connection dropped mid-download starts the blob over.
    await withRetries(async () => {
      const res = await this.#fetch(`${this.#base}/blobs/${desc.digest}`);
      const hash = crypto.createHash("sha256");
      const tmp = `${target}.part-${process.pid}-${crypto.randomBytes(4).toString("hex")}`;
      let done = 0;
      try {
        await pipeline(
          res.body,
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
      } catch (err) {
        throw droppedConnection(err, new URL(this.#base)) ?? err;
      } finally {
        fs.rmSync(tmp, { force: true });
      }
    });
  }
}
