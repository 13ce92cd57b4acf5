// The registry client against trouble: Docker's credential helpers,
// proxies, 5xx and dropped connections, expiring tokens, registries that
// cannot be reached. Every server is on 127.0.0.1 and started here; names
// under .invalid (which never resolve) reach them only through the test's
// own proxy.
import { execFile, spawnSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, expect, it } from "vitest";
import { pullImage, RegistryError } from "../lib/index.js";
import type { HostConnection } from "../lib/network/address.js";
import { runtimePaths } from "../lib/vm/runtime.js";
import { tempDir } from "./helpers.js";
import {
  dropBeforeAnswer,
  dropMidBody,
  redirectTo,
  selfSignedCert,
  startFront,
  startProxy,
  tokensExpireAfter,
  unavailable,
} from "./fixtures/network.mjs";
import { buildLayout, push, startRegistry } from "./fixtures/registry.mjs";

const cli = path.resolve("bin/krunbox.js");
const execFileAsync = promisify(execFile);
const layer = {
  fill(dir: string) {
    fs.mkdirSync(path.join(dir, "bin"));
    fs.copyFileSync(path.join(runtimePaths().dir, "busybox"), path.join(dir, "bin/busybox"));
    fs.writeFileSync(path.join(dir, "data"), Buffer.alloc(256 * 1024, "krunbox"));
  },
};

let registry: Awaited<ReturnType<typeof startRegistry>>;
beforeAll(async () => {
  registry = await startRegistry();
  await push(buildLayout([layer], {}).layout, `${registry.host}/team/app:1`);
});
afterAll(() => registry?.stop());

/** Runs `body` with these environment variables set (undefined: unset), then restores them. */
async function withEnv<T>(vars: Record<string, string | undefined>, body: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  const apply = (v: Record<string, string | undefined>) => {
    for (const [k, value] of Object.entries(v)) if (value === undefined) delete process.env[k];
    else process.env[k] = value;
  };
  apply(vars);
  try {
    return await body();
  } finally {
    apply(saved);
  }
}

const failure = (p: Promise<unknown>) => p.then(() => expect.unreachable("the pull succeeded"), (e: unknown) => e as RegistryError);
const noProxy = { HTTPS_PROXY: undefined, HTTP_PROXY: undefined, https_proxy: undefined, http_proxy: undefined, NO_PROXY: undefined, no_proxy: undefined };

/** A docker-credential-<name> that logs what it was asked and knows one host's credentials. */
function credentialHelper(bin: string, name: string, host: string, username: string, secret: string) {
  const log = path.join(bin, `${name}.log`);
  fs.writeFileSync(
    path.join(bin, `docker-credential-${name}`),
    `#!/bin/sh
read -r server || true
echo "$1 $server" >> ${log}
if [ "$server" = "${host}" ]; then
  printf '{"ServerURL":"%s","Username":"%s","Secret":"%s"}' "$server" '${username}' '${secret}'
else
  echo "credentials not found in native keychain"; exit 1
fi
`,
    { mode: 0o755 },
  );
  return log;
}

it("gets credentials from Docker's credential helpers (credHelpers first, then credsStore), as Docker asks them", async () => {
  const creds = { username: "alice", password: "s3cret" };
  const secured = await startRegistry({ auth: creds });
  const tokens = await startRegistry({ token: { username: "bob", password: "t0ken" } });
  try {
    await push(buildLayout([layer], {}).layout, `${secured.host}/team/private:1`, creds);
    await push(buildLayout([layer], {}).layout, `${tokens.host}/private/app:1`, { username: "bob", password: "t0ken" });
    const bin = tempDir();
    const dockerConfig = tempDir();
    const storeLog = credentialHelper(bin, "krunbox-store", secured.host, "alice", "s3cret");
    const otherLog = credentialHelper(bin, "krunbox-other", "elsewhere:5000", "x", "y");
    // Docker Desktop-style: an identity token (username "<token>") for the token service.
    credentialHelper(bin, "krunbox-identity", tokens.host, "<token>", "identity-bob");
    const config = (c: object) => fs.writeFileSync(path.join(dockerConfig, "config.json"), JSON.stringify(c));
    const ref = `${secured.host}/team/private:1`;
    await withEnv({ DOCKER_CONFIG: dockerConfig, PATH: `${bin}:${process.env.PATH}` }, async () => {
      config({ credsStore: "krunbox-store" });
      expect((await pullImage(ref, { pullPolicy: "always" })).digest).toMatch(/^sha256:/);
      expect(fs.readFileSync(storeLog, "utf8")).toBe(`get ${secured.host}\n`);

      // credHelpers names the helper for its host, whatever credsStore says.
      config({ credsStore: "krunbox-store", credHelpers: { [secured.host]: "krunbox-other" } });
      const err = await failure(pullImage(ref, { pullPolicy: "always" }));
      expect(err).toMatchObject({ reason: "auth", message: expect.stringMatching(/needs credentials/) });
      expect(fs.readFileSync(otherLog, "utf8")).toBe(`get ${secured.host}\n`);

      config({ credsStore: "krunbox-missing" });
      const missing = await failure(pullImage(ref, { pullPolicy: "always" }));
      expect(missing).toBeInstanceOf(RegistryError);
      expect(missing).toMatchObject({ reason: "credential-helper", message: expect.stringMatching(/docker-credential-krunbox-missing .*is not on PATH/) });

      config({ credHelpers: { [tokens.host]: "krunbox-identity" } });
      expect((await pullImage(`${tokens.host}/private/app:1`)).digest).toMatch(/^sha256:/);
    });
  } finally {
    await secured.stop();
    await tokens.stop();
  }
});

it("goes through HTTPS_PROXY and HTTP_PROXY, but not for NO_PROXY names or loopback", async () => {
  const proxy = await startProxy();
  const cert = selfSignedCert("registry.invalid");
  const plain = await startFront(registry.host);
  const tls = await startFront(registry.host, { tls: cert });
  try {
    const env = { ...noProxy, HTTPS_PROXY: proxy.url, HTTP_PROXY: proxy.url };
    await withEnv(env, async () => {
      // Plain HTTP (insecure) goes through HTTP_PROXY.
      const viaHttp = await pullImage(`registry.invalid:${plain.port}/team/app:1`, { insecure: true });
      expect(viaHttp.digest).toMatch(/^sha256:/);
      expect(proxy.connects).toContain(`registry.invalid:${plain.port}`);
      expect(plain.log.length).toBeGreaterThan(0);
      // HTTPS goes through HTTPS_PROXY; this process does not trust the certificate.
      const untrusted = await failure(pullImage(`registry.invalid:${tls.port}/team/app:1`, { pullPolicy: "always" }));
      expect(untrusted).toMatchObject({ reason: "tls", message: expect.stringMatching(/TLS with registry\.invalid:\d+ failed through the proxy .*NODE_EXTRA_CA_CERTS/) });
      expect(proxy.connects).toContain(`registry.invalid:${tls.port}`);
      // Loopback is never proxied (as in Docker).
      const before = proxy.connects.length;
      expect((await pullImage(`${registry.host}/team/app:1`, { pullPolicy: "always" })).digest).toBe(viaHttp.digest);
      expect(proxy.connects.length).toBe(before);
    });
    // NO_PROXY: the name is looked up directly, and .invalid never resolves.
    await withEnv({ ...env, NO_PROXY: "localhost,.invalid" }, async () => {
      const before = proxy.connects.length;
      expect(await failure(pullImage(`registry.invalid:${tls.port}/team/app:1`))).toMatchObject({ reason: "dns" });
      expect(proxy.connects.length).toBe(before);
    });
    // The CLI, trusting the certificate, pulls over HTTPS through the proxy
    // (asynchronously: the proxy and the front run in this process).
    const r = await execFileAsync(process.execPath, [cli, "image", "pull", `registry.invalid:${tls.port}/team/app:1`], {
      encoding: "utf8",
      timeout: 60_000,
      env: { ...process.env, HTTPS_PROXY: proxy.url, NODE_EXTRA_CA_CERTS: cert.cert },
    });
    expect(r.stderr).toBe("");
    expect(r.stdout).toMatch(new RegExp(`^registry\\.invalid:${tls.port}/team/app:1 sha256:[0-9a-f]{64}\n$`));
    expect(tls.log.some((l) => l.path.includes("/manifests/"))).toBe(true);
  } finally {
    await Promise.all([proxy.stop(), plain.stop(), tls.stop()]);
    fs.rmSync(cert.dir, { recursive: true, force: true });
  }
});

// pullImage's internal checkConnection (what krunbox mcp's --allow-registry
// passes) judges every connection by the address it goes to, through a proxy too.
it("checks every connection of a checked pull where it goes, and through a proxy asks for the checked address, never the name", async () => {
  const proxy = await startProxy();
  const front = await startFront(registry.host);
  const registryPort = registry.host.split(":")[1];
  // Blobs are redirected to "localhost", a name this host resolves.
  front.faults.push(redirectTo(/\/blobs\//, `http://localhost:${registryPort}`));
  // Blobs of its own, so that every pull downloads them (and follows the redirect) until one succeeds.
  await push(buildLayout([{ fill: (dir: string) => fs.writeFileSync(path.join(dir, "id"), crypto.randomUUID()) }], {}).layout, `${registry.host}/team/checked:1`);
  // An address written out is proxied (only loopback by name is not), and reaches the front through the test proxy.
  const ref = `[::ffff:127.0.0.1]:${front.port}/team/checked:1`;
  const frontAsProxied = `[::ffff:7f00:1]:${front.port}`; // as URLs write it
  const seen: HostConnection[] = [];
  const checked = (refuse: (c: HostConnection) => boolean) => ({
    checkConnection: (c: HostConnection) => (seen.push(c), refuse(c) ? `refused: ${c.host} is at ${c.address}` : undefined),
  });
  try {
    await withEnv({ ...noProxy, HTTP_PROXY: proxy.url }, async () => {
      // Refused, the redirect is never followed: no tunnel, and the error says why.
      const err = await failure(pullImage(ref, { insecure: true }, checked((c) => c.host === "localhost")));
      expect(err).toMatchObject({
        reason: "blocked",
        message: expect.stringMatching(new RegExp(`^cannot reach \\[::ffff:7f00:1\\]:${front.port}: refused: localhost is at`)),
      });
      expect(seen.some((c) => c.host === "localhost")).toBe(true);
      expect(proxy.connects.length).toBeGreaterThan(0);
      expect(proxy.connects.every((c) => c === frontAsProxied)).toBe(true);

      // Allowed, the redirect goes through the proxy too, to the address "localhost" has here, not to the name.
      seen.length = 0;
      const image = await pullImage(ref, { insecure: true }, checked(() => false));
      expect(image.digest).toMatch(/^sha256:/);
      const local = seen.find((c) => c.host === "localhost");
      expect(local).toMatchObject({ port: Number(registryPort), address: expect.stringMatching(/^(127\.0\.0\.1|::1)$/) });
      expect(proxy.connects).toContain(`${local!.address === "::1" ? "[::1]" : local!.address}:${registryPort}`);
      expect(proxy.connects.some((c) => c.startsWith("localhost"))).toBe(false);

      // A name this host cannot resolve is never handed to the proxy to resolve, though the proxy would reach it.
      const unchecked = await pullImage(`registry.invalid:${front.port}/team/checked:1`, { insecure: true, pullPolicy: "always" });
      expect(unchecked.digest).toBe(image.digest);
      const again = proxy.connects.length;
      seen.length = 0;
      const dns = await failure(pullImage(`registry.invalid:${front.port}/team/checked:1`, { insecure: true, pullPolicy: "always" }, checked(() => false)));
      expect(dns).toMatchObject({ reason: "dns", message: expect.stringMatching(/cannot resolve registry\.invalid \(DNS: \w+\) on this host, which checks/) });
      expect(seen).toEqual([]);
      expect(proxy.connects.length).toBe(again);
    });
  } finally {
    await Promise.all([proxy.stop(), front.stop()]);
  }
});

it("says when the proxy is what failed", async () => {
  const refusing = await startProxy({ answer: 403 });
  const gone = await startProxy();
  await gone.stop();
  try {
    await withEnv({ ...noProxy, HTTPS_PROXY: refusing.url }, async () => {
      const err = await failure(pullImage("registry.invalid/team/app:1"));
      expect(err).toMatchObject({ reason: "proxy", message: expect.stringMatching(/the proxy http:\/\/127\.0\.0\.1:\d+ refused to connect to registry\.invalid \(it answered 403\)/) });
    });
    await withEnv({ ...noProxy, HTTPS_PROXY: gone.url }, async () => {
      const err = await failure(pullImage("registry.invalid/team/app:1"));
      expect(err).toMatchObject({ reason: "proxy", message: expect.stringMatching(/cannot reach the proxy .*ECONNREFUSED.*HTTPS_PROXY/) });
    });
  } finally {
    await refusing.stop();
  }
});

it("retries 5xx answers and dropped connections with backoff, a bounded number of times", async () => {
  const front = await startFront(registry.host);
  try {
    const ref = `127.0.0.1:${front.port}/team/app:1`;
    front.faults.push(unavailable(/\/manifests\//, 2), dropBeforeAnswer(/\/blobs\//, 1), dropMidBody(/\/blobs\//, 1));
    const image = await pullImage(ref, { pullPolicy: "always" });
    expect(fs.readFileSync(path.join(image.rootfs, "data")).length).toBe(256 * 1024);
    expect(front.log.filter((l) => l.path.includes("/manifests/")).length).toBe(3);
    // Never more than four tries, and the error says what the registry answered.
    front.faults.splice(0, Infinity, unavailable(/\/manifests\//, Infinity));
    const before = front.log.length;
    const err = await failure(pullImage(ref, { pullPolicy: "always" }));
    expect(err).toMatchObject({ reason: "http", message: expect.stringMatching(/answered 503 \(gave up after 4 attempts\)/) });
    expect(front.log.length - before).toBe(4);
  } finally {
    await front.stop();
  }
});

it("fetches a new token once when a bearer token expires mid-pull", async () => {
  const user = { username: "carol", password: "pw" };
  const tokens = await startRegistry({ token: user });
  const front = await startFront(tokens.host);
  try {
    await push(buildLayout([layer], {}).layout, `${tokens.host}/private/app:1`, user);
    const ref = `127.0.0.1:${front.port}/private/app:1`;
    front.faults.push(tokensExpireAfter(2));
    expect((await pullImage(ref, { credentials: user })).digest).toMatch(/^sha256:/);
    const bearers = new Set(front.log.map((l) => l.authorization).filter((a) => a?.startsWith("Bearer ")));
    expect(bearers.size).toBeGreaterThanOrEqual(2);
    // A fresh token refused at once is a credentials problem: no loop.
    front.faults.splice(0, Infinity, tokensExpireAfter(0));
    const before = front.log.length;
    const err = await failure(pullImage(ref, { credentials: user, pullPolicy: "always" }));
    expect(err).toMatchObject({ reason: "auth", message: expect.stringMatching(/answered 401/) });
    expect(front.log.length - before).toBeLessThanOrEqual(3);
  } finally {
    await front.stop();
    await tokens.stop();
  }
});

it("says why a registry cannot be reached: DNS, a refused connection", async () => {
  await withEnv(noProxy, async () => {
    const dns = await failure(pullImage("nosuch.invalid/team/app:1"));
    expect(dns).toBeInstanceOf(RegistryError);
    expect(dns).toMatchObject({ reason: "dns", message: expect.stringMatching(/cannot resolve nosuch\.invalid \(DNS: ENOTFOUND\); check the registry name/) });
    const closed = await startProxy(); // a port that was just free
    await closed.stop();
    const port = new URL(closed.url).port;
    const refused = await failure(pullImage(`127.0.0.1:${port}/team/app:1`));
    expect(refused).toMatchObject({ reason: "refused", message: expect.stringMatching(new RegExp(`127\\.0\\.0\\.1:${port} refused the connection; is a registry listening`)) });
  });
  const r = spawnSync(process.execPath, [cli, "image", "pull", "nosuch.invalid/team/app:1"], { encoding: "utf8", timeout: 60_000 });
  expect(r.status).toBe(125);
  expect(r.stderr).toMatch(/^krunbox: cannot resolve nosuch\.invalid/);
});
