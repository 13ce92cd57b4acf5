// Host-side connections krunbox makes on someone else's behalf (image pulls
// a model asked for), judged like the guest's: by the address actually
// connected, with the network policy's table of special addresses
// (loopback, private, link-local, the host's own...; src/common/ip_address.cc).
import dns from "node:dns";
import { createRequire } from "node:module";
import net from "node:net";
import type { Dispatcher } from "undici";
import { loadNative } from "../vm/native.js";

export interface SpecialRange {
  /** "loopback", "private", "link-local", "the host's own address", ... */
  kind: string;
  /** The whole range, e.g. "127.0.0.0/8". */
  block: string;
}

/**
 * The special range an address (or a prefix) lies in, or undefined for a
 * public one and for a prefix that merely spans special ranges: what the
 * egress policy means by a rule "naming" a special address.
 */
export function specialRange(addressOrPrefix: string): SpecialRange | undefined {
  return loadNative().classifyAddress(addressOrPrefix) ?? undefined;
}

/** One connection about to be made: `host` as the URL names it, `address` where it would go. */
export interface HostConnection {
  host: string;
  port: number;
  address: string;
}

/** Allows a connection (undefined) or says why not. */
export type HostConnectionCheck = (c: HostConnection) => string | undefined;

/**
 * An undici dispatcher (for fetch's `dispatcher`) that resolves each host
 * itself and connects only to an address `check` allows, so that a
 * redirect, a token server or a name that resolves to the host's loopback
 * (DNS rebinding included: the address checked is the one connected) is
 * refused before any connection.
 */
export function checkedDispatcher(check: HostConnectionCheck): Dispatcher {
  // Loaded here, not with krunbox: it takes ~100 ms, and only these pulls need it.
  const { Agent, buildConnector } = createRequire(import.meta.url)("undici") as typeof import("undici");
  const connect = buildConnector({});
  return new Agent({
    connect(options, callback) {
      const host = options.hostname.replace(/^\[(.*)\]$/, "$1");
      const port = Number(options.port) || (options.protocol === "https:" ? 443 : 80);
      const resolved = (addresses: string[]) => {
        let refusal = "";
        for (const address of addresses) {
          const why = check({ host, port, address });
          // `host` keeps its name, so TLS still checks the certificate against it.
          if (why === undefined) return connect({ ...options, hostname: address }, callback);
          refusal ||= why;
        }
        callback(new Error(refusal || `${host} has no address`), null);
      };
      if (net.isIP(host)) return resolved([host]);
      dns.lookup(host, { all: true }, (err, found) => (err ? callback(err, null) : resolved(found.map((a) => a.address))));
    },
  });
}
