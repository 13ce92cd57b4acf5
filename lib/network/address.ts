// Host-side connections krunbox makes on someone else's behalf (image pulls
// a model asked for), judged like the guest's: by the address actually
// connected, with the network policy's table of special addresses
// (loopback, private, link-local, the host's own...; src/common/ip_address.cc).
// lib/images/http.ts applies a HostConnectionCheck to every connection.
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
