// Networking on real VMs. THE NETWORK RULE: every destination here is a
// server this file starts on 127.0.0.1; blocking is shown with loopback
// servers the policy does not allow, and with the guest network's own
// addresses (the gateway, synthetic addresses), never with outside ones.
import http from "node:http";
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ConfigError,
  GuestConnectionError,
  PortInUseError,
  Sandbox,
  type ConnectionEvent,
  type ConnectRequest,
} from "../lib/index.js";
import { vmProcesses, waitFor } from "./helpers.js";

interface TestServer {
  port: number;
  connections: number;
  close(): Promise<void>;
}

async function listen(server: net.Server): Promise<TestServer> {
  const s: TestServer = { port: 0, connections: 0, close: () => new Promise((r) => server.close(() => r())) };
  server.on("connection", (c) => {
    s.connections++;
    c.on("error", () => {});
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  s.port = (server.address() as net.AddressInfo).port;
  return s;
}

const servers: TestServer[] = [];
let web: TestServer, echo: TestServer, forbidden: TestServer;

beforeAll(async () => {
  web = await listen(http.createServer((req, res) => res.end(`hello from the host ${req.url}\n`)));
  // Echoes the first chunk and closes.
  echo = await listen(net.createServer((c) => c.once("data", (d) => c.end(d))));
  forbidden = await listen(net.createServer((c) => c.end("you should not see this\n")));
  servers.push(web, echo, forbidden);
});

afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
  await waitFor("VM processes to end", () => vmProcesses().length === 0 || undefined);
});

describe("a policy with allowed names", () => {
  let sb: Sandbox;
  const events: ConnectionEvent[] = [];
  const asked: ConnectRequest[] = [];
  beforeAll(async () => {
    sb = await Sandbox.create({
      network: {
        allow: [`svc.test:${web.port}`, `svc.test:${echo.port}`, `veto.test:${web.port}`],
        hosts: { "svc.test": "127.0.0.1", "veto.test": "127.0.0.1", "hidden.test": "127.0.0.1" },
        onConnect: async (c) => {
          asked.push(c);
          return c.host !== "veto.test";
        },
      },
    });
    sb.on("connection", (e: ConnectionEvent) => events.push(e));
  });
  afterAll(() => sb.stop());

  it("reaches an allowed host server over HTTP (busybox wget) and raw TCP (nc)", async () => {
    const before = web.connections;
    const r = await sb.exec("wget", ["-qO-", `http://svc.test:${web.port}/hello`]);
    expect(r).toMatchObject({ exitCode: 0, stdout: "hello from the host /hello\n" });
    const nc = await sb.exec("sh", ["-c", `echo ping | nc svc.test ${echo.port}`]);
    expect(nc.stdout).toBe("ping\n");
    expect(web.connections).toBe(before + 1);
    // Events travel apart from the exec's result: wait for them.
    await waitFor("the connection event", () => events.find((e) => e.port === web.port));
    expect(events).toContainEqual({ host: "svc.test", ip: "127.0.0.1", port: web.port, protocol: "tcp", allowed: true,
      reason: `allow entry "svc.test:${web.port}"` });
    expect(asked).toContainEqual({ host: "svc.test", ip: "127.0.0.1", port: echo.port, protocol: "tcp" });
  });

  it("answers DNS for allowed names only", async () => {
    const ok = await sb.exec("nslookup", ["svc.test"]);
    expect(ok.exitCode).toBe(0);
    expect(ok.stdout).toMatch(/Name:\s+svc\.test\s+Address: 198\.19\.\d+\.\d+/);
    // Mapped in hosts but not allowed, and not mapped at all: no such name.
    for (const name of ["hidden.test", "unknown.test"]) {
      const r = await sb.exec("nslookup", [name]);
      expect(r.exitCode).not.toBe(0);
      expect(r.stdout + r.stderr).toMatch(/NXDOMAIN|can't find/);
    }
  });

  it("refuses a port that is not allowed at once, and nothing reaches the host", async () => {
    const r = await sb.exec("sh", ["-c", `timeout 20 nc svc.test ${forbidden.port} </dev/null`]);
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toMatch(/Connection refused/);
    expect(forbidden.connections).toBe(0);
    await waitFor("the refusal's event", () => events.find((e) => e.port === forbidden.port));
    expect(events).toContainEqual(expect.objectContaining({ host: "svc.test", port: forbidden.port, allowed: false,
      reason: "no allow entry matches" }));
  });

  it("lets onConnect veto a connection the rules allow", async () => {
    const before = web.connections;
    const r = await sb.exec("sh", ["-c", `wget -qO- http://veto.test:${web.port}/`]);
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toMatch(/Connection refused/);
    expect(web.connections).toBe(before);
    expect(asked).toContainEqual({ host: "veto.test", ip: "127.0.0.1", port: web.port, protocol: "tcp" });
    await waitFor("the veto's event", () => events.find((e) => e.host === "veto.test"));
    expect(events).toContainEqual(expect.objectContaining({ host: "veto.test", allowed: false, reason: "onConnect refused it" }));
  });

  it("holds against root in the guest: no proxy to bypass, routes, the gateway, raw ICMP", async () => {
    const before = web.connections;
    const script = [
      "unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY",
      "ip route add 0.0.0.0/1 via 198.18.0.1 dev eth0",
      "ip route add 128.0.0.0/1 via 198.18.0.1 dev eth0",
      `nc -w 3 198.18.0.1 ${web.port} </dev/null && echo GATEWAY-OPEN`,
      `nc -w 3 198.18.0.1 ${forbidden.port} </dev/null && echo GATEWAY-OPEN`,
      `nc -w 3 198.19.0.250 ${forbidden.port} </dev/null && echo SYNTHETIC-OPEN`,
      "ping -c 1 -W 2 198.18.0.1 >/dev/null && echo PING-ANSWERED",
      "echo done",
    ].join("; ");
    const r = await sb.exec("sh", ["-c", script]);
    expect(r.stdout).toBe("done\n");
    expect(web.connections).toBe(before);
    expect(forbidden.connections).toBe(0);
    await waitFor("the gateway's refusal", () => events.find((e) => e.port === forbidden.port && e.reason.startsWith("the gateway")));
    expect(events).toContainEqual(expect.objectContaining({ port: forbidden.port, allowed: false,
      reason: "the gateway serves only DNS (UDP port 53)" }));
    // The allowed path still works after all that.
    expect((await sb.exec("wget", ["-qO-", `http://svc.test:${web.port}/still`])).stdout).toBe("hello from the host /still\n");
  });
});

describe("public", () => {
  it("never reaches the host's loopback, even through a name that resolves there", async () => {
    await using sb = await Sandbox.create({ network: "public" });
    const events: ConnectionEvent[] = [];
    sb.on("connection", (e: ConnectionEvent) => events.push(e));
    // "127.0.0.1." is no IP literal for the guest, so it asks the gateway's
    // DNS; the host's resolver reads it as 127.0.0.1.
    const r = await sb.exec("sh", ["-c", `wget -qO- http://127.0.0.1.:${web.port}/; nc -w 3 127.0.0.1. ${forbidden.port} </dev/null`]);
    expect(r.stderr).toMatch(/Connection refused[\s\S]*Connection refused/);
    expect(forbidden.connections).toBe(0);
    await waitFor("both refusals", () => events.length >= 2 || undefined);
    expect(events).toContainEqual(expect.objectContaining({ host: "127.0.0.1", ip: "127.0.0.1", allowed: false }));
    expect(events.every((e) => !e.allowed && /loopback/.test(e.reason))).toBe(true);
  });
});

describe("without a network (the default)", () => {
  let sb: Sandbox;
  beforeAll(async () => {
    sb = await Sandbox.create({ ports: [{ guest: 8000 }, "0:8001"] });
    await sb.exec("sh", ["-c", "mkdir -p /www && echo served-by-the-guest > /www/index.html"]);
    sb.spawn("httpd", ["-f", "-p", "127.0.0.1:8000", "-h", "/www"]);
    for (let i = 0; (await sb.exec("wget", ["-qO-", "http://127.0.0.1:8000/"])).exitCode !== 0; i++)
      if (i > 50) throw new Error("httpd did not start in the guest");
  });
  afterAll(() => sb.stop());

  it("has lo up and no other interface", async () => {
    const r = await sb.exec("sh", ["-c", "ls /sys/class/net; ip link show lo"]);
    expect(r.stdout).toMatch(/^lo\n/);
    expect(r.stdout).toMatch(/<LOOPBACK,UP,LOWER_UP>/);
    expect((await sb.exec("wget", ["-qO-", "http://127.0.0.1:8000/"])).stdout).toBe("served-by-the-guest\n");
    expect((await sb.exec("wget", ["-qO-", "http://localhost:8000/"])).stdout).toBe("served-by-the-guest\n");
    const out = await sb.exec("sh", ["-c", `nc -w 3 198.18.0.1 ${web.port} </dev/null`]);
    expect(out.stderr).toMatch(/Network is unreachable/);
  });

  it("publishes guest ports on the host's loopback", async () => {
    expect(sb.ports).toEqual([
      { guest: 8000, host: expect.any(Number), hostIp: "127.0.0.1" },
      { guest: 8001, host: expect.any(Number), hostIp: "127.0.0.1" },
    ]);
    const body = await new Promise<string>((resolve, reject) =>
      http.get(`http://127.0.0.1:${sb.ports[0].host}/`, (res) => {
        let d = "";
        res.on("data", (c) => (d += c)).on("end", () => resolve(d));
      }).on("error", reject),
    );
    expect(body).toBe("served-by-the-guest\n");
    // Nothing listens on guest port 8001: the host's connection is reset.
    const reset = await new Promise<string>((resolve) => {
      const c = net.createConnection(sb.ports[1].host, "127.0.0.1");
      c.on("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? "error")).on("close", () => resolve("closed"));
    });
    expect(["ECONNRESET", "closed"]).toContain(reset);
  });

  it("connects to a guest port with sb.connect(), no host port needed", async () => {
    const socket = await sb.connect(8000);
    socket.write("GET / HTTP/1.0\r\n\r\n");
    let reply = "";
    socket.on("data", (d) => (reply += d));
    await new Promise((r) => socket.on("close", r));
    expect(reply).toMatch(/^HTTP\/1\.[01] 200 OK[\s\S]*served-by-the-guest\n$/);
    await expect(sb.connect(8002)).rejects.toThrow(GuestConnectionError);
    await expect(sb.connect(8002)).rejects.toThrow(/Connection refused/);
  });
});

it("refuses a taken host port before booting, with a typed error", async () => {
  const before = vmProcesses().length;
  await expect(Sandbox.create({ ports: [`${forbidden.port}:80`] })).rejects.toThrow(PortInUseError);
  await expect(Sandbox.create({ ports: [`${forbidden.port}:80`] })).rejects.toThrow(new RegExp(`ports\\[0\\]: host port ${forbidden.port}`));
  expect(vmProcesses().length).toBe(before);
});

it("rejects a malformed policy entry before anything starts, naming it", async () => {
  await expect(Sandbox.create({ network: { allow: ["pypi.org", "not a host"] } })).rejects.toThrow(ConfigError);
  await expect(Sandbox.create({ network: { allow: ["pypi.org", "not a host"] } })).rejects.toMatchObject({ field: "network.allow[1]" });
  await expect(Sandbox.create({ network: { hosts: { "api.test": "nowhere" } } })).rejects.toMatchObject({ field: "network.hosts.api.test" });
  await expect(Sandbox.create({ ports: ["80:99999"] })).rejects.toMatchObject({ field: "ports[0]" });
  await expect(Sandbox.create({ network: "everything" as never })).rejects.toMatchObject({ field: "network" });
});
