// Registry credentials found the way Docker finds them, in
// ~/.docker/config.json ($DOCKER_CONFIG moves it): `credHelpers[host]`,
// else `credsStore` (both name a docker-credential-<name> program), else
// `auths[host].auth` (base64 "user:password").
import { execFile } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { RegistryError } from "../errors.js";

export interface Credentials {
  username: string;
  password: string;
}

/** What a credential helper may return instead of a password: an OAuth2 refresh token for the registry's token service. */
export interface IdentityToken {
  identityToken: string;
}

interface DockerConfig {
  auths?: Record<string, { auth?: string; identitytoken?: string }>;
  credsStore?: string;
  credHelpers?: Record<string, string>;
}

const HELPER_TIMEOUT_MS = 60_000;
const MAX_HELPER_OUTPUT = 64 * 1024;

function configPath(): string {
  return path.join(process.env.DOCKER_CONFIG ?? path.join(os.homedir(), ".docker"), "config.json");
}

function readConfig(): DockerConfig {
  try {
    return JSON.parse(fs.readFileSync(configPath(), "utf8")) as DockerConfig;
  } catch {
    return {}; // no config, or not ours to read
  }
}

// Docker stores Docker Hub under its old index URL, everything else by host.
const serverAddress = (registry: string) => (registry === "docker.io" ? "https://index.docker.io/v1/" : registry);

// docker-credential-<name> get: the server address on stdin, JSON on stdout.
function askHelper(name: string, registry: string, source: string): Promise<Credentials | IdentityToken | undefined> {
  const program = `docker-credential-${name}`;
  return new Promise((resolve, reject) => {
    const child = execFile(program, ["get"], { timeout: HELPER_TIMEOUT_MS, maxBuffer: MAX_HELPER_OUTPUT, encoding: "utf8" }, (err, stdout, stderr) => {
      const said = (stdout.trim() || stderr.trim()).split("\n")[0].slice(0, 300);
      if (err) {
        // The protocol's answer for "nothing stored": pull anonymously.
        if (/credentials not found/i.test(said)) return resolve(undefined);
        const code = (err as NodeJS.ErrnoException).code;
        const why = code === "ENOENT" ? "is not on PATH" : err.killed ? `did not answer within ${HELPER_TIMEOUT_MS / 1000} s` : `failed: ${said || err.message}`;
        return reject(
          new RegistryError(
            `${program} (${source} in ${configPath()}) ${why}; install it, log in again with \`docker login ${registry}\`, or remove ${source} from the config`,
            "credential-helper",
          ),
        );
      }
      try {
        const { Username, Secret } = JSON.parse(stdout) as { Username?: string; Secret?: string };
        if (typeof Secret !== "string" || !Secret) return resolve(undefined);
        resolve(Username === "<token>" ? { identityToken: Secret } : { username: Username ?? "", password: Secret });
      } catch {
        reject(new RegistryError(`${program} answered something that is not JSON credentials: ${said}`, "credential-helper"));
      }
    });
    child.stdin?.on("error", () => {}); // a helper that exits without reading
    child.stdin?.end(serverAddress(registry));
  });
}

function fromAuths(config: DockerConfig, registry: string): Credentials | IdentityToken | undefined {
  const auths = config.auths ?? {};
  const keys = registry === "docker.io" ? ["https://index.docker.io/v1/", "docker.io", "index.docker.io"] : [registry, `https://${registry}`, `http://${registry}`];
  for (const key of keys) {
    const entry = auths[key];
    if (entry?.identitytoken) return { identityToken: entry.identitytoken };
    if (!entry?.auth) continue;
    const text = Buffer.from(entry.auth, "base64").toString("utf8");
    const colon = text.indexOf(":");
    if (colon > 0) return { username: text.slice(0, colon), password: text.slice(colon + 1) };
  }
  return undefined;
}

/** The credentials Docker would use for `registry` (a host, or "docker.io"), if any. */
export async function dockerCredentials(registry: string): Promise<Credentials | IdentityToken | undefined> {
  const config = readConfig();
  const helper = config.credHelpers?.[registry];
  if (helper) return askHelper(helper, registry, `credHelpers["${registry}"]`);
  if (config.credsStore) return askHelper(config.credsStore, registry, "credsStore");
  return fromAuths(config, registry);
}
