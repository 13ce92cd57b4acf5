// Which registries an image the model names may come from. The host pulls
// it, so a reference is a request the host makes on the model's behalf:
// without this a model could point the host at services on its loopback or
// private network (an SSRF). --allow-registry lists registries ("*": any,
// the default); each connection of the pull, redirects and token servers
// included, may reach a special address (loopback, private, link-local,
// the host's own) only for a registry listed by name.
import dns from "node:dns/promises";
import net from "node:net";
import { LimitError } from "../../errors.js";
import { specialRange, type HostConnectionCheck } from "../../network/address.js";
import { isLocalRegistry, parseReference } from "../../images/reference.js";
import { SET_BY_OPERATOR, type McpLimits } from "../limits.js";

export const ANY_REGISTRY = "*";

/** "host", "host:port" or "[v6]:port" as host and port (undefined: any port). */
function splitRegistry(entry: string): { host: string; port?: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+))(?::(\d+))?$/.exec(entry.toLowerCase());
  return { host: m?.[1] ?? m?.[2] ?? entry, port: m?.[3] === undefined ? undefined : Number(m[3]) };
}

/**
 * Refuses an image from a registry --allow-registry does not allow (by its
 * name, and by where the name leads now, so that an image the host pulled
 * from its own private registry is not the model's to use from the cache
 * either), and returns the check for each connection its pull makes.
 */
export async function registryCheck(image: string, limits: McpLimits): Promise<HostConnectionCheck> {
  const { registry } = parseReference(image);
  const listed = limits.allowRegistries.filter((r) => r !== ANY_REGISTRY).map(splitRegistry);
  const asked = splitRegistry(registry);
  const names = (r: { host: string; port?: number }, host: string, port?: number) => r.host === host && (r.port === undefined || r.port === port);
  if (!limits.allowRegistries.includes(ANY_REGISTRY) && !listed.some((r) => names(r, asked.host, asked.port)))
    throw new LimitError(
      "--allow-registry",
      `refused: image "${image}" comes from ${registry}, but this server pulls only from ${limits.allowRegistries.join(", ")} ` +
        `(--allow-registry, ${SET_BY_OPERATOR}); use an image from one of those`,
    );
  const check: HostConnectionCheck = ({ host, port, address }) => {
    const special = specialRange(address);
    if (!special || listed.some((r) => names(r, host.toLowerCase(), port))) return undefined;
    return (
      `refused: ${host}:${port} is at ${address}, which is ${special.kind}: this server pulls from such addresses only for ` +
      `registries --allow-registry names (${limits.allowRegistries.filter((r) => r !== ANY_REGISTRY).join(", ") || "none"}; ${SET_BY_OPERATOR})`
    );
  };
  // Docker Hub is public; a name that does not resolve now can reach nothing.
  if (registry !== "docker.io") {
    const { host } = asked;
    const port = asked.port ?? (isLocalRegistry(registry) ? 80 : 443);
    const addresses = net.isIP(host) ? [host] : await dns.lookup(host, { all: true }).then((found) => found.map((a) => a.address), () => []);
    for (const address of addresses) {
      const why = check({ host, port, address });
      if (why) throw new LimitError("--allow-registry", why);
    }
  }
  return check;
}
