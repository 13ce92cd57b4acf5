// The `network` option: "none", "public", or a policy ({ allow, deny, hosts,
// onConnect }), validated here and enforced by the runner's network stack
// (src/runner/net/), outside the guest.
import net from "node:net";
import { z } from "zod";
import { ConfigError } from "../errors.js";
import type { NetRule, VmNetwork } from "../vm/options.js";

/** What onConnect is asked about, for each connection the rules allow. */
export interface ConnectRequest {
  /** The name the guest looked up, when it dialled one (not an IP address). */
  host?: string;
  /** The address krunbox is about to connect to, on the host. */
  ip: string;
  port: number;
  protocol: "tcp" | "udp";
}

/** A "connection" event: one egress decision. */
export interface ConnectionEvent extends ConnectRequest {
  allowed: boolean;
  /** The entry that allowed or denied it, or why it was refused. */
  reason: string;
  /** Allowed, but connecting on the host failed (e.g. "Connection refused"). */
  error?: string;
}

export interface NetworkPolicy {
  /** Host names ("pypi.org", "*.pythonhosted.org", "example.com:443"), IP addresses
   * or prefixes ("203.0.113.0/24", "[2001:db8::1]:443"), or "*" (any public destination). */
  allow?: string[];
  /** Same forms as allow; deny wins. */
  deny?: string[];
  /** Host-side name overrides, like Docker's extra hosts: { "api.test": "127.0.0.1" }. */
  hosts?: Record<string, string | string[]>;
  /** Asked about every connection the rules allow; false (or a throw) refuses it.
   * No answer within 10 s refuses it too. */
  onConnect?: (c: ConnectRequest) => boolean | Promise<boolean>;
}

export type NetworkOption = "none" | "public" | NetworkPolicy;

const hostName = /^(?=.{1,253}$)[a-z0-9_-]{1,63}(\.[a-z0-9_-]{1,63})*$/;

function port(text: string): number | undefined {
  if (!/^\d{1,5}$/.test(text)) return undefined;
  const n = Number(text);
  return n >= 1 && n <= 65535 ? n : undefined;
}

function cidr(text: string): string | undefined {
  const [address, bits, ...rest] = text.split("/");
  const family = net.isIP(address);
  if (!family || rest.length) return undefined;
  if (bits === undefined) return address;
  const n = /^\d{1,3}$/.test(bits) ? Number(bits) : -1;
  return n >= 0 && n <= (family === 4 ? 32 : 128) ? text : undefined;
}

/** Parses one allow/deny entry; undefined when it is none of the accepted forms. */
export function parseRule(entry: string): NetRule | undefined {
  const text = entry;
  let target = entry.trim().toLowerCase();
  let p: number | undefined;
  const bracket = /^\[([^\]]+)\](?::(\d+))?$/.exec(target);
  if (bracket) {
    target = bracket[1];
    if (bracket[2] !== undefined && (p = port(bracket[2])) === undefined) return undefined;
    const value = cidr(target);
    return value && net.isIP(value.split("/")[0]) === 6 ? { kind: "cidr", value, port: p, text } : undefined;
  }
  if (target.split(":").length === 2) {
    const colon = target.lastIndexOf(":");
    if ((p = port(target.slice(colon + 1))) === undefined) return undefined;
    target = target.slice(0, colon);
  }
  if (target === "*") return { kind: "any", port: p, text };
  const address = cidr(target);
  if (address) return { kind: "cidr", value: address, port: p, text };
  if (target.startsWith("*.") && hostName.test(target.slice(2))) return { kind: "suffix", value: target.slice(1), port: p, text };
  if (hostName.test(target) && !/^[\d.]+$/.test(target)) return { kind: "name", value: target, port: p, text };
  return undefined;
}

const examples = '"pypi.org", "*.pythonhosted.org", "example.com:443", "203.0.113.0/24", "[2001:db8::1]:443" or "*"';

export const networkPolicySchema = z
  .object({
    allow: z.array(z.string()).max(1024).optional(),
    deny: z.array(z.string()).max(1024).optional(),
    hosts: z.record(z.string(), z.union([z.string(), z.array(z.string()).min(1).max(16)])).optional(),
    onConnect: z.custom<(c: ConnectRequest) => boolean | Promise<boolean>>((f) => typeof f === "function", "must be a function").optional(),
  })
  .strict();

export const networkSchema = z.union([z.literal("none"), z.literal("public"), networkPolicySchema]);

/** The runner's policy for the option; undefined for "none". Throws ConfigError naming the entry. */
export function resolveNetwork(option: NetworkOption | undefined): VmNetwork | undefined {
  if (option === undefined || option === "none") return undefined;
  if (option === "public") return { allow: [{ kind: "any", text: "*" }], deny: [], hosts: {} };
  const rules = (list: string[] | undefined, field: string) =>
    (list ?? []).map((entry, i) => {
      const rule = parseRule(entry);
      if (!rule)
        throw new ConfigError(`network.${field}[${i}]`, `network.${field}[${i}]: "${entry}" is not a host name, address or prefix; use ${examples}`);
      return rule;
    });
  const hosts: Record<string, string[]> = {};
  for (const [name, value] of Object.entries(option.hosts ?? {})) {
    const key = name.toLowerCase();
    if (!hostName.test(key)) throw new ConfigError(`network.hosts.${name}`, `network.hosts: "${name}" is not a host name`);
    const addresses = typeof value === "string" ? [value] : value;
    for (const a of addresses)
      if (!net.isIP(a)) throw new ConfigError(`network.hosts.${name}`, `network.hosts.${name}: "${a}" is not an IP address`);
    hosts[key] = addresses;
  }
  return { allow: rules(option.allow, "allow"), deny: rules(option.deny, "deny"), hosts, onConnect: option.onConnect };
}
