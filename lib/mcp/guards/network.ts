// What network a model may give a sandbox. --network is the ceiling on the
// mode (none, allow-list policies, public); --allow-host lists the
// destinations a policy may allow, in the policy's own rule forms, and
// special addresses (the host's loopback, private ranges, link-local,
// the host's own addresses) are reached only through an --allow-host
// entry that names them, whatever the mode. Published ports listen only on
// the host's loopback, on free ports, and only with --allow-publish.
import net from "node:net";
import { z } from "zod";
import { LimitError } from "../../errors.js";
import { specialRange } from "../../network/address.js";
import { networkSchema, resolveNetwork, type NetworkOption } from "../../network/policy.js";
import { portsSchema, resolvePorts, type PortSpec } from "../../network/ports.js";
import type { NetRule } from "../../vm/options.js";
import { SET_BY_OPERATOR, type McpLimits } from "../limits.js";

// The API's `network` option less onConnect, a function no model can send.
const [noNetwork, publicNetwork, policy] = networkSchema.options;
export const modelNetworkSchema = z
  .union([noNetwork, publicNetwork, policy.omit({ onConnect: true })])
  .describe(
    '"none" (no network device), "public" (any public destination), or a policy: allow (host names, "*.suffix", ' +
      '"name:port", IP addresses and prefixes), deny (wins), hosts (name -> IP, like extra hosts)',
  );
export type ModelNetwork = z.infer<typeof modelNetworkSchema>;

export const modelPortsSchema = portsSchema.describe(
  'guest ports to publish on the host\'s loopback, on a free port the system picks: "8000" or { guest: 8000 }',
);

/** Where one allow entry lets a sandbox connect: a name is resolved on the host, so only its public addresses count. */
type Destination = { port?: number } & ({ kind: "any" } | { kind: "name" | "suffix" | "cidr"; value: string; via?: string });

function destinations(rule: NetRule, hosts: Record<string, string[]>): Destination[] {
  const { kind, value = "", port } = rule;
  // A name the policy maps in `hosts` goes to those addresses, special ones included.
  const mapped = (name: string) => hosts[name].map((address): Destination => ({ kind: "cidr", value: address, port, via: name }));
  if (kind === "any" || kind === "cidr") return [kind === "any" ? { kind, port } : { kind, value, port }];
  if (kind === "name") return hosts[value] ? mapped(value) : [{ kind, value, port }];
  const under = Object.keys(hosts).filter((name) => name.endsWith(value) && name.length > value.length);
  return [{ kind, value, port }, ...under.flatMap(mapped)];
}

function prefix(text: string) {
  const [address, bits] = text.split("/");
  const family = net.isIP(address) === 4 ? ("ipv4" as const) : ("ipv6" as const);
  return { address, family, bits: bits === undefined ? (family === "ipv4" ? 32 : 128) : Number(bits) };
}

function prefixCovers(outer: string, inner: string): boolean {
  const o = prefix(outer);
  const i = prefix(inner);
  if (o.family !== i.family || i.bits < o.bits) return false;
  const list = new net.BlockList();
  list.addSubnet(o.address, o.bits, o.family);
  return list.check(i.address, i.family);
}

/** Whether an --allow-host pattern takes in a destination; "*" takes in only public ones, as in the policy. */
function covers(pattern: NetRule, d: Destination): boolean {
  if (pattern.port !== undefined && pattern.port !== d.port) return false;
  if (d.kind === "any") return pattern.kind === "any";
  if (d.kind === "cidr") return pattern.kind === "cidr" ? prefixCovers(pattern.value!, d.value) : pattern.kind === "any" && !specialRange(d.value);
  if (pattern.kind === "any") return true;
  const under = (suffix: string) => d.value.endsWith(suffix) && (d.kind === "suffix" || d.value.length > suffix.length);
  return pattern.kind === "suffix" ? under(pattern.value!) : pattern.kind === "name" && d.kind === "name" && d.value === pattern.value;
}

const describeHosts = (limits: McpLimits) => limits.allowHosts.map((r) => r.text).join(", ");

/** Why a destination is refused, after the entry's own text. */
function refusal(d: Destination): string {
  const outside = "it is outside the destinations this server lets sandboxes reach";
  if (d.kind !== "cidr") return `: ${outside}`;
  const reaches = d.via ? ` reaches ${d.value} (network.hosts maps ${d.via} there)` : "";
  const special = specialRange(d.value);
  if (!special) return `${reaches}: ${outside}`;
  return `${reaches}: ${d.value} is ${special.kind}, which sandboxes of this server reach only through an --allow-host entry that names it`;
}

function checkDestinations(rule: NetRule, hosts: Record<string, string[]>, field: string, limits: McpLimits): void {
  for (const d of destinations(rule, hosts))
    if (!limits.allowHosts.some((pattern) => covers(pattern, d)))
      throw new LimitError(
        "--allow-host",
        `refused: ${field} "${rule.text}"${refusal(d)}: ${describeHosts(limits)} (--allow-host, ${SET_BY_OPERATOR})`,
      );
}

/** The network option for a model's sandbox, within --network and --allow-host. */
export function confineNetwork(network: ModelNetwork | undefined, limits: McpLimits): NetworkOption {
  if (network === undefined || network === "none") return "none";
  if (limits.network === "none")
    throw new LimitError("--network", `refused: this server gives sandboxes no network (--network none, ${SET_BY_OPERATOR}); use network "none"`);
  const anyOk = limits.network === "public";
  const noAny = (what: string) =>
    new LimitError(
      "--network",
      `refused: ${what} lets a sandbox reach any public destination, but this server allows only policies that list their ` +
        `destinations (--network allow-list, ${SET_BY_OPERATOR}); name them in network.allow`,
    );
  if (network === "public") {
    if (!anyOk) throw noAny('network "public"');
    checkDestinations({ kind: "any", text: "public" }, {}, "network", limits);
    return network;
  }
  const resolved = resolveNetwork(network)!;
  resolved.allow.forEach((rule, i) => {
    if (rule.kind === "any" && !anyOk) throw noAny(`network.allow[${i}] "${rule.text}"`);
    checkDestinations(rule, resolved.hosts, `network.allow[${i}]`, limits);
  });
  return network;
}

/** Published ports for a model's sandbox: only with --allow-publish, on loopback, on free host ports. */
export function confinePorts(ports: (string | number | PortSpec)[] | undefined, limits: McpLimits): (string | number | PortSpec)[] {
  if (!ports?.length) return [];
  if (!limits.allowPublish)
    throw new LimitError(
      "--allow-publish",
      `refused: ports would publish guest ports on the host, which this server does not allow (no --allow-publish, ${SET_BY_OPERATOR}); ` +
        "reach servers in the sandbox from inside it with sandbox_exec",
    );
  resolvePorts(ports).forEach(({ hostIp, hostPort, guestPort }, i) => {
    const refuse = (what: string) =>
      new LimitError(
        "--allow-publish",
        `refused: ports[${i}] ${what}; this server publishes guest ports only on the host's loopback, on a free port the ` +
          `system picks (--allow-publish, ${SET_BY_OPERATOR}): give the guest port alone, e.g. "${guestPort}"`,
      );
    if (hostPort !== 0) throw refuse(`asks for host port ${hostPort}`);
    if (specialRange(hostIp)?.kind !== "loopback") throw refuse(`listens on ${hostIp}`);
  });
  return ports;
}
