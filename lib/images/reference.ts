// OCI image references: [registry[:port]/]repository[:tag][@sha256:digest],
// with Docker Hub's defaults ("alpine" is docker.io/library/alpine:latest).
import { ConfigError } from "../errors.js";

export interface ImageReference {
  registry: string;
  repository: string;
  tag: string | undefined;
  digest: string | undefined;
  /** What to ask the registry for: the digest if given, else the tag. */
  reference: string;
  /** Normalized text form. */
  canonical: string;
}

const DOCKER_HUB = "docker.io";
const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const DIGEST = /^sha256:[a-f0-9]{64}$/;

export function parseReference(text: string, field = "image"): ImageReference {
  const bad = (why: string) => new ConfigError(field, `${field}: "${text}" is not an image reference (${why}); e.g. "alpine:3.20" or "localhost:5000/team/app@sha256:..."`);
  if (typeof text !== "string" || !text || text.length > 512) throw bad("empty or too long");
  let rest = text;
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw bad("the digest must be sha256:<64 hex digits>");
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(":");
  if (colon > rest.lastIndexOf("/")) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw bad(`bad tag "${tag}"`);
  }
  const parts = rest.split("/");
  // The first part names a registry when it looks like a host.
  let registry = DOCKER_HUB;
  if (parts.length > 1 && (parts[0].includes(".") || parts[0].includes(":") || parts[0] === "localhost")) registry = parts.shift()!;
  if (registry === "index.docker.io") registry = DOCKER_HUB;
  if (registry === DOCKER_HUB && parts.length === 1) parts.unshift("library");
  if (parts.some((p) => !COMPONENT.test(p))) throw bad("repository names are lowercase letters, digits and separators");
  const repository = parts.join("/");
  if (!tag && !digest) tag = "latest";
  const canonical = `${registry}/${repository}${tag ? `:${tag}` : ""}${digest ? `@${digest}` : ""}`;
  return { registry, repository, tag, digest, reference: digest ?? tag!, canonical };
}

/** Plain HTTP is only for the local machine (or when asked for). */
export function isLocalRegistry(registry: string): boolean {
  const host = registry.replace(/:\d+$/, "").replace(/^\[|\]$/g, "");
  return host === "localhost" || host === "::1" || /^127\./.test(host);
}
