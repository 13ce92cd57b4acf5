// Published ports and Sandbox.connect(): TCP connections to guest ports
// through the agent's forwarder (src/agent/forward.h), so they need no
// network device. Published ports are served by the runner.
import net from "node:net";
import { z } from "zod";
import { ConfigError, GuestConnectionError } from "../errors.js";

export interface PortSpec {
  guest: number;
  /** Host port; 0 (the default) takes any free one, reported in `sb.ports`. */
  host?: number;
  /** Host address to listen on; "127.0.0.1" unless given. */
  hostIp?: string;
}

export interface PublishedPort {
  guest: number;
  host: number;
  hostIp: string;
}

const portNumber = z.number().int().min(0).max(65535);
export const portsSchema = z
  .array(
    z.union([
      z.string(),
      z.number().int().min(1).max(65535),
      z.object({ guest: portNumber.min(1), host: portNumber.optional(), hostIp: z.string().optional() }).strict(),
    ]),
  )
  .max(64);

/** The runner's form of the `ports` option: "8080:80", "127.0.0.1:8080:80", "[::1]:8080:80", "80", 80 or objects. */
export function resolvePorts(ports: (string | number | PortSpec)[] | undefined): { hostIp: string; hostPort: number; guestPort: number }[] {
  return (ports ?? []).map((p, i) => {
    const field = `ports[${i}]`;
    let spec: PortSpec;
    if (typeof p === "number") spec = { guest: p };
    else if (typeof p === "object") spec = p;
    else {
      const m = /^(?:(?:\[([0-9a-fA-F:.]+)\]|(\d{1,3}(?:\.\d{1,3}){3})):(\d{1,5}):|(\d{1,5}):)?(\d{1,5})$/.exec(p);
      if (!m) throw new ConfigError(field, `${field}: "${p}" must look like "HOST:GUEST", "IP:HOST:GUEST" or "GUEST" (e.g. "8080:80")`);
      const host = m[3] ?? m[4];
      spec = { hostIp: m[1] ?? m[2], host: host === undefined ? 0 : Number(host), guest: Number(m[5]) };
    }
    const hostIp = spec.hostIp ?? "127.0.0.1";
    if (!net.isIP(hostIp)) throw new ConfigError(`${field}.hostIp`, `${field}.hostIp: "${hostIp}" is not an IP address`);
    const host = spec.host ?? 0;
    if (!(spec.guest >= 1 && spec.guest <= 65535) || !(host >= 0 && host <= 65535))
      throw new ConfigError(field, `${field}: ports are numbers from 1 to 65535 (host 0: any free port)`);
    return { hostIp, hostPort: host, guestPort: spec.guest };
  });
}

/**
 * A TCP connection to `port` inside the guest, through the agent's
 * forwarder at `socketPath`: resolves once the guest accepted it.
 */
export function connectGuestPort(socketPath: string, port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.createConnection(socketPath);
    let reply = Buffer.alloc(0);
    const settle = () => socket.off("readable", onReadable).off("error", onError).off("close", onClose);
    const fail = (why: string) => {
      settle();
      socket.destroy();
      reject(new GuestConnectionError(`cannot connect to guest port ${port}: ${why}`));
    };
    // Paused-mode reads, so that the socket handed over has lost nothing
    // and starts flowing when the caller listens.
    const onReadable = () => {
      let chunk: Buffer | null;
      while ((chunk = socket.read() as Buffer | null) !== null) {
        reply = Buffer.concat([reply, chunk]);
        const nl = reply.indexOf(10);
        if (nl < 0) {
          if (reply.length > 128) return fail("the guest agent sent a malformed reply");
          continue;
        }
        const line = reply.subarray(0, nl).toString();
        if (line !== "ok") return fail(line.replace(/^error /, ""));
        settle();
        // Whatever the guest server sent already belongs to the caller.
        if (nl + 1 < reply.length) socket.unshift(reply.subarray(nl + 1));
        return resolve(socket);
      }
    };
    const onError = (err: Error) => fail(err.message);
    const onClose = () => fail("the sandbox closed the connection (is it running?)");
    socket.on("readable", onReadable).on("error", onError).on("close", onClose);
    socket.write(`connect ${port}\n`);
  });
}
