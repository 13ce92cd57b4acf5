// HTTP for the registry client: HTTPS_PROXY / HTTP_PROXY / NO_PROXY (which
// Node's fetch ignores), bounded retries with backoff on 5xx and dropped
// connections, failures explained (DNS, refused, TLS, proxy) with a
// remedy, each a RegistryError, and optionally a check on where every
// connection goes (krunbox mcp's --allow-registry).
import dns from "node:dns/promises";
import net from "node:net";
import { setTimeout as delay } from "node:timers/promises";
import { getProxyForUrl } from "proxy-from-env";
import { Agent, buildConnector, Pool, ProxyAgent, request, type Dispatcher } from "undici";
import { RegistryError, type RegistryFailure } from "../errors.js";
import type { HostConnectionCheck } from "../network/address.js";
import { isLocalRegistry } from "./reference.js";

const ATTEMPTS = 4;
const FIRST_BACKOFF_MS = 200;
const MAX_REDIRECTS = 5;

export type HttpResponse = Dispatcher.ResponseData;

/** A failure worth another try (a 5xx, a dropped connection); withRetries unwraps it. */
export class TransientError extends Error {
  constructor(readonly error: RegistryError) {
    super(error.message);
  }
}

/** Runs `attempt` until it succeeds, throws something other than a TransientError, or has tried ATTEMPTS times. */
export async function withRetries<T>(attempt: () => Promise<T>): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await attempt();
    } catch (err) {
      if (!(err instanceof TransientError)) throw err;
      if (i >= ATTEMPTS) throw new RegistryError(`${err.message} (gave up after ${ATTEMPTS} attempts)`, err.error.reason);
      // Exponential, with jitter so that many clients do not retry in step.
      await delay(FIRST_BACKOFF_MS * 2 ** (i - 1) * (0.75 + Math.random() / 2));
    }
  }
}

const redact = (proxy: string) => proxy.replace(/\/\/[^@/]*@/, "//***@");

/** A connection the check refused, or could not judge; explain() names the registry it was for. */
class UncheckedConnectionError extends Error {
  constructor(
    message: string,
    readonly reason: RegistryFailure,
  ) {
    super(message);
  }
}

/**
 * Where a connection to host:port may go: the first of the addresses the
 * name has here (never as a proxy would resolve it) that `check` allows.
 * The connection is then made to that very address, so a name that
 * resolves elsewhere a moment later (DNS rebinding) changes nothing.
 */
async function checkedAddress(host: string, port: number, check: HostConnectionCheck): Promise<string> {
  let addresses = [host];
  if (!net.isIP(host))
    try {
      addresses = (await dns.lookup(host, { all: true })).map((a) => a.address);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new UncheckedConnectionError(`cannot resolve ${host} (DNS: ${code}) on this host, which checks where each connection of this pull goes`, "dns");
    }
  let refusal = "";
  for (const address of addresses) {
    const why = check({ host, port, address });
    if (why === undefined) return address;
    refusal ||= why;
  }
  throw new UncheckedConnectionError(refusal || `${host} has no address`, "blocked");
}

const unbracket = (host: string) => host.replace(/^\[(.*)\]$/, "$1");

/**
 * A dispatcher whose every connection (redirects and token servers
 * included) goes only where `check` allows: straight to the checked
 * address, or through `proxy` with a CONNECT to that address, never to a
 * name the proxy would resolve itself. TLS still verifies the
 * certificate against the name.
 */
function checkedDispatcher(check: HostConnectionCheck, proxy: string): Dispatcher {
  if (proxy)
    return new ProxyAgent({
      uri: proxy,
      // ProxyAgent asks this client for a CONNECT tunnel to "host:port" for each connection it makes.
      clientFactory: (origin, options) => {
        const client = new Pool(origin, options);
        const tunnel = client.connect.bind(client) as (o: Dispatcher.ConnectOptions) => Promise<Dispatcher.ConnectData>;
        return Object.assign(client, {
          connect: async (o: Dispatcher.ConnectOptions) => {
            const colon = o.path.lastIndexOf(":");
            const port = o.path.slice(colon + 1);
            const address = await checkedAddress(unbracket(o.path.slice(0, colon)), Number(port), check);
            const to = `${net.isIPv6(address) ? `[${address}]` : address}:${port}`;
            return tunnel({ ...o, path: to, headers: { ...(o.headers as Record<string, string>), host: to } });
          },
        });
      },
    });
  const connect = buildConnector({});
  return new Agent({
    connect: (options, callback) => {
      const port = Number(options.port) || (options.protocol === "https:" ? 443 : 80);
      checkedAddress(unbracket(options.hostname), port, check).then(
        // `host` keeps the name, so TLS checks the certificate against it.
        (address) => connect({ ...options, hostname: address }, callback),
        (err: Error) => callback(err, null),
      );
    },
  });
}

/** Connections for one registry: direct, or through the proxy the environment names for each URL. */
export class RegistryHttp {
  readonly #agents = new Map<string, Dispatcher>();
  readonly #check: HostConnectionCheck | undefined;

  /** `check` judges every connection these requests make. */
  constructor(check?: HostConnectionCheck) {
    this.#check = check;
  }

  // As Docker (Go's net/http) does, loopback is never proxied.
  #proxyFor(url: URL): string {
    return isLocalRegistry(url.host) ? "" : getProxyForUrl(url.href);
  }

  #dispatcher(proxy: string): Dispatcher {
    let agent = this.#agents.get(proxy);
    if (!agent) {
      agent = this.#check ? checkedDispatcher(this.#check, proxy) : proxy ? new ProxyAgent(proxy) : new Agent();
      this.#agents.set(proxy, agent);
    }
    return agent;
  }

  /**
   * One request; a 5xx or a dropped connection is a TransientError, any
   * other failure to get an answer a RegistryError that says why.
   */
  async request(url: string, options: { method?: "GET" | "POST"; headers?: Record<string, string>; body?: string } = {}): Promise<HttpResponse> {
    const target = new URL(url);
    const proxy = this.#proxyFor(target);
    let res: HttpResponse;
    try {
      res = await request(target, { ...options, dispatcher: this.#dispatcher(proxy), maxRedirections: MAX_REDIRECTS });
    } catch (err) {
      throw explain(err, target, proxy);
    }
    if (res.statusCode >= 500 || res.statusCode === 429) {
      await res.body.dump();
      throw new TransientError(new RegistryError(`${url} answered ${res.statusCode}`, "http"));
    }
    return res;
  }

  async close(): Promise<void> {
    await Promise.all([...this.#agents.values()].map((a) => a.close()));
    this.#agents.clear();
  }
}

/** A response body, refused past `maxBytes` (the registry is not trusted to be small). */
export async function readBody(res: HttpResponse, url: string, maxBytes: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > maxBytes) {
        res.body.destroy();
        throw new RegistryError(`${url} answered more than ${maxBytes} bytes, more than krunbox reads from it`);
      }
      chunks.push(chunk);
    }
  } catch (err) {
    throw droppedConnection(err, new URL(url)) ?? err;
  }
  return Buffer.concat(chunks);
}

const DROPPED = /^(UND_ERR_SOCKET|UND_ERR_CLOSED|ECONNRESET|EPIPE|ETIMEDOUT|UND_ERR_CONNECT_TIMEOUT|UND_ERR_HEADERS_TIMEOUT|UND_ERR_BODY_TIMEOUT)$/;

/** A TransientError if `err` is a connection that dropped or timed out (worth another try). */
export function droppedConnection(err: unknown, url: URL, viaProxy = ""): TransientError | undefined {
  const e = err as NodeJS.ErrnoException;
  if (!DROPPED.test(e?.code ?? "")) return undefined;
  return new TransientError(new RegistryError(`the connection to ${url.host}${viaProxy} failed: ${e.message} (${e.code})`, "connection"));
}

/** A RegistryError (or TransientError) for a request that got no answer: what failed, and what to do. */
export function explain(err: unknown, url: URL, proxy: string): RegistryError | TransientError {
  if (err instanceof RegistryError || err instanceof TransientError) return err;
  const e = err as NodeJS.ErrnoException;
  const code = e.code ?? "";
  const host = url.host;
  const fail = (reason: RegistryFailure, message: string) => new RegistryError(message, reason);
  if (err instanceof UncheckedConnectionError) return fail(err.reason, `cannot reach ${host}: ${err.message}`);
  const viaProxy = proxy ? ` through the proxy ${redact(proxy)}` : "";
  // Through a proxy, every connection is to the proxy: the registry's own
  // failures come back as the proxy's answer to CONNECT.
  if (proxy) {
    if (/^Proxy response \((\d+)\)/.test(e.message ?? "")) {
      const status = /\((\d+)\)/.exec(e.message!)![1];
      const remedy = status === "407" ? "put the proxy's credentials in its URL (http://user:password@host:port)" : `check the proxy, or add ${url.hostname} to NO_PROXY`;
      return fail("proxy", `the proxy ${redact(proxy)} refused to connect to ${host} (it answered ${status}); ${remedy}`);
    }
    if (code === "ECONNREFUSED" || code === "ENOTFOUND" || code === "EAI_AGAIN")
      return fail("proxy", `cannot reach the proxy ${redact(proxy)} (${code}) to get to ${host}; check HTTPS_PROXY / HTTP_PROXY, or add ${url.hostname} to NO_PROXY`);
  }
  if (code === "ENOTFOUND" || code === "EAI_AGAIN" || code === "EAI_NONAME")
    return fail("dns", `cannot resolve ${url.hostname} (DNS: ${code}); check the registry name in the reference and this host's DNS (or set HTTPS_PROXY if registries are reached through a proxy)`);
  if (code === "ECONNREFUSED")
    return fail("refused", `${host} refused the connection${viaProxy}; is a registry listening on that port? (HTTPS is port 443 unless the reference names one)`);
  if (/CERT|SSL|TLS|EPROTO|SELF_SIGNED|UNABLE_TO_VERIFY/.test(code) || /certificate|ssl|tls/i.test(e.message ?? ""))
    return fail(
      "tls",
      `TLS with ${host} failed${viaProxy}: ${e.message} (${code}); if it uses a private CA, give Node its certificate with NODE_EXTRA_CA_CERTS=/path/ca.pem; for a registry without TLS pass insecure: true (--insecure)`,
    );
  return droppedConnection(err, url, viaProxy) ?? fail("connection", `the connection to ${host}${viaProxy} failed: ${e.message ?? String(err)}${code ? ` (${code})` : ""}`);
}
