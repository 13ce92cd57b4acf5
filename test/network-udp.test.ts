// UDP through the sandbox network on a real VM. THE NETWORK RULE: every
// destination is a UDP server this file starts on 127.0.0.1; blocking is
// shown with a loopback server the policy does not allow. The client is
// python3 from the debootstrapped test root (busybox's nc has no UDP).
import dgram from "node:dgram";
import path from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { Sandbox, type ConnectionEvent } from "../lib/index.js";
import { packageRoot } from "../lib/vm/runtime.js";
import { vmProcesses, waitFor } from "./helpers.js";

interface UdpServer {
  port: number;
  datagrams: number;
  close(): Promise<void>;
}

// Answers every datagram with "echo:" and what it carried.
async function udpEcho(): Promise<UdpServer> {
  const socket = dgram.createSocket("udp4");
  const s: UdpServer = { port: 0, datagrams: 0, close: () => new Promise((r) => socket.close(() => r())) };
  socket.on("message", (msg, from) => {
    s.datagrams++;
    socket.send(Buffer.concat([Buffer.from("echo:"), msg]), from.port, from.address);
  });
  await new Promise<void>((r) => socket.bind(0, "127.0.0.1", r));
  s.port = socket.address().port;
  return s;
}

// Sends one datagram per argument's port and prints each answer, or
// "timeout" when none comes within a second.
const client = `
import socket, sys
host = sys.argv[1]
for port in sys.argv[2:]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1.0)
    s.sendto(b"ping-" + port.encode(), (host, int(port)))
    try:
        print(s.recvfrom(100)[0].decode())
    except socket.timeout:
        print("timeout")
`;

let allowed: UdpServer, forbidden: UdpServer;
beforeAll(async () => {
  allowed = await udpEcho();
  forbidden = await udpEcho();
});
afterAll(async () => {
  await allowed.close();
  await forbidden.close();
  await waitFor("VM processes to end", () => vmProcesses().length === 0 || undefined);
});

it("carries UDP to an allowed host server, by name, and drops it to one the policy does not allow", async () => {
  const events: ConnectionEvent[] = [];
  await using sb = await Sandbox.create({
    image: { dir: path.join(packageRoot, "deps/debian/python-root") },
    network: { allow: [`svc.test:${allowed.port}`], hosts: { "svc.test": "127.0.0.1" } },
  });
  sb.on("connection", (e: ConnectionEvent) => events.push(e));
  const r = await sb.exec("python3", ["-c", client, "svc.test", String(allowed.port), String(forbidden.port)]);
  expect(r).toMatchObject({ exitCode: 0, stderr: "" });
  expect(r.stdout).toBe(`echo:ping-${allowed.port}\ntimeout\n`);
  expect(allowed.datagrams).toBe(1);
  expect(forbidden.datagrams).toBe(0);
  await waitFor("both decisions", () => events.length >= 2 || undefined);
  expect(events).toContainEqual(expect.objectContaining({ host: "svc.test", ip: "127.0.0.1", port: allowed.port, protocol: "udp", allowed: true }));
  expect(events).toContainEqual(expect.objectContaining({ port: forbidden.port, protocol: "udp", allowed: false }));
  await sb.stop();
}, 120_000);
