// `krunbox mcp` through the SDK's real Client over stdio, against
// bin/krunbox.js: real sandboxes, real guard rails, real process deaths.
import { spawn, spawnSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import path from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { packageRoot } from "../lib/vm/runtime.js";
import { VM_DEFAULTS } from "../lib/vm/defaults.js";
import { Volume } from "../lib/index.js";
import { tempDir, vmProcesses, waitFor } from "./helpers.js";
import { buildLayout, push, startRegistry } from "./fixtures/registry.mjs";

const cli = path.join(packageRoot, "bin/krunbox.js");

type Result = {
  isError?: boolean;
  content: { type: string; text: string }[];
  structuredContent?: Record<string, any>;
};

const servers: { client: Client; transport: StdioClientTransport }[] = [];
// Servers killed by SIGKILL cannot remove their sandboxes' socket folders
// from TMPDIR: keep those inside this run's folder, which is removed.
const serverTmp = fs.mkdtempSync(path.join(process.env.KRUNBOX_TEST_BASE!, "tmp-"));
const env = { ...process.env, TMPDIR: serverTmp } as Record<string, string>;

/** Starts `krunbox mcp FLAGS` and connects a Client to it. */
async function connect(...flags: string[]) {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [cli, "mcp", ...flags],
    env,
    stderr: "inherit",
  });
  const client = new Client({ name: "krunbox-test", version: "1" });
  await client.connect(transport);
  servers.push({ client, transport });
  const call = async (name: string, args: Record<string, unknown> = {}) =>
    (await client.callTool({ name, arguments: args }, undefined, { timeout: 170_000 })) as Result;
  return { client, transport, call };
}

/** The structured result of a call that must succeed. */
function ok(r: Result): Record<string, any> {
  expect(r.isError, r.content[0]?.text).toBeFalsy();
  expect(JSON.parse(r.content[0].text)).toEqual(r.structuredContent);
  return r.structuredContent!;
}

/** The message of a call that must fail as a tool error. */
function refused(r: Result): string {
  expect(r.isError, JSON.stringify(r)).toBe(true);
  return r.content[0].text;
}

/** A server on 127.0.0.1 (THE NETWORK RULE: tests reach only what they start on loopback) that counts connections. */
async function loopbackServer(server: net.Server) {
  let connections = 0;
  server.on("connection", (c) => {
    connections++;
    c.on("error", () => {});
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as net.AddressInfo).port,
    get connections() {
      return connections;
    },
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

afterEach(async () => {
  // Closing the client ends the server's stdin: its sandboxes must stop.
  await Promise.all(servers.splice(0).map(({ client }) => client.close()));
  await waitFor("no VM processes", () => vmProcesses().length === 0, 20_000);
});

it("lists its tools with schemas derived from the API's", async () => {
  const { client, call } = await connect();
  const { tools } = await client.listTools();
  expect(tools.map((t) => t.name).sort()).toEqual([
    "sandbox_create",
    "sandbox_exec",
    "sandbox_list",
    "sandbox_list_files",
    "sandbox_read_file",
    "sandbox_run_code",
    "sandbox_stop",
    "sandbox_write_file",
  ]);
  const byName = Object.fromEntries(tools.map((t) => [t.name, t]));
  const create = byName.sandbox_create.inputSchema as any;
  expect(Object.keys(create.properties).sort()).toEqual(["cpus", "env", "image", "memoryMiB", "network", "ports", "volumes"]);
  // The API's network option less onConnect, which no model can send.
  const policy = create.properties.network.anyOf.find((s: any) => s.type === "object");
  expect(Object.keys(policy.properties).sort()).toEqual(["allow", "deny", "hosts"]);
  expect(create.properties.ports.items.anyOf).toHaveLength(3);
  expect((byName.sandbox_write_file.inputSchema as any).properties.encoding.enum).toEqual(["utf8", "base64"]);
  expect(byName.sandbox_read_file.inputSchema.required).toEqual(expect.arrayContaining(["id", "path"]));
  expect(create.properties.memoryMiB).toMatchObject({ type: "integer", minimum: 64, default: VM_DEFAULTS.memoryMiB });
  expect(create.properties.volumes.items.anyOf).toHaveLength(4);
  expect(create.additionalProperties).toBe(false);
  // Self-contained: many clients and models do not follow $ref.
  expect(JSON.stringify(tools)).not.toContain("$ref");
  expect(byName.sandbox_exec.inputSchema.required).toEqual(expect.arrayContaining(["id", "command"]));
  expect((byName.sandbox_run_code.inputSchema as any).properties.language.enum).toEqual(["python", "node", "sh"]);
  expect((byName.sandbox_exec.outputSchema as any).properties.exitCode).toBeDefined();
  expect(client.getInstructions()).toMatch(/at most 4 sandbox\(es\) and 4096 MiB of memory together, 4 cpus each; network: no network/);
  expect(client.getInstructions()).toMatch(/named volumes: mcp-\*; image registries: \*/);
  // Only what the model may choose: no backend, no host folder as the root.
  expect(refused(await call("sandbox_create", { backend: "libkrun" }))).toMatch(/backend/);
  expect(refused(await call("sandbox_create", { image: { dir: "/" } }))).toMatch(/image/);
  expect(refused(await call("sandbox_exec", { id: "sb-nope", command: "true" }))).toMatch(/no sandbox "sb-nope"/);
});

it("refuses bad flags, naming them, before serving", () => {
  for (const [flags, message] of [
    [["--max-sandboxes", "0"], /--max-sandboxes 0: .*greater than or equal to 1/],
    [["--max-memory", "lots"], /--max-memory lots: /],
    [["--allow-bind", "/no/such/folder:ro"], /--allow-bind \/no\/such\/folder:ro: \/no\/such\/folder is not an existing folder/],
    [["--python-image", "Not An Image"], /--python-image: "Not An Image" is not an image reference/],
    [["--network", "all"], /--network all: /],
    [["--allow-host", "127.0.0.1"], /--allow-host: sandboxes get no network with --network none/],
    [["--network", "allow-list", "--allow-host", "not a host"], /--allow-host not a host: a host name/],
    [["--allow-registry", "nohost"], /--allow-registry nohost: a registry host/],
    [["--allow-volume", "../x"], /--allow-volume \.\.\/x: a volume name/],
    [["--max-cpus", "65"], /--max-cpus 65: /],
    [["--max-file-bytes", "10"], /--max-file-bytes 10: /],
  ] as const) {
    const r = spawnSync(process.execPath, [cli, "mcp", ...flags], { encoding: "utf8", input: "", timeout: 30_000 });
    expect(r.status, r.stderr).toBe(125);
    expect(r.stderr).toMatch(message);
    expect(r.stdout).toBe("");
  }
});

it("creates a sandbox, runs commands in it with bounded output, moves files, and stops it", async () => {
  const { call } = await connect("--max-output", "4096", "--max-file-bytes", "4096", "--max-list-entries", "5");
  const { id } = ok(await call("sandbox_create", { env: { A: "1" } }));
  expect(id).toMatch(/^sb-[0-9a-f]{8}$/);
  expect(ok(await call("sandbox_list")).sandboxes).toEqual([expect.objectContaining({ id, image: "default", memoryMiB: 512, activeCalls: 0 })]);

  const r = ok(await call("sandbox_exec", { id, command: "sh", args: ["-c", "echo $A $B; cat; pwd; echo err >&2; exit 3"], stdin: "in\n", cwd: "/tmp", env: { B: "2" } }));
  expect(r).toEqual({ exitCode: 3, signal: null, timedOut: false, stdout: "1 2\nin\n/tmp\n", stderr: "err\n" });

  const long = ok(await call("sandbox_exec", { id, command: "seq", args: ["1", "20000"] }));
  expect(long.stdout).toMatch(/^1\n2\n3\n[\s\S]*\n\[\.\.\. \d+ bytes left out \.\.\.\]\n[\s\S]*19999\n20000\n$/);
  expect(long.stdout.length).toBeLessThan(4096 + 100);
  expect(long.note).toMatch(/stdout was 108894 bytes: \d+ in the middle were left out .*--max-output/);

  const slow = ok(await call("sandbox_exec", { id, command: "sleep", args: ["30"], timeoutMs: 1000 }));
  expect(slow).toMatchObject({ timedOut: true, exitCode: null });
  expect(slow.note).toMatch(/timeoutMs \(1000 ms\)/);

  // Files, as text and as bytes; missing parent folders are made.
  const text = "print('hi')\n";
  expect(ok(await call("sandbox_write_file", { id, path: "/work/src/main.py", content: text }))).toEqual({ path: "/work/src/main.py", bytes: 12 });
  expect(ok(await call("sandbox_exec", { id, command: "cat", args: ["/work/src/main.py"] })).stdout).toBe(text);
  expect(ok(await call("sandbox_read_file", { id, path: "/work/src/main.py" }))).toEqual({ path: "/work/src/main.py", encoding: "utf8", bytes: 12, content: text });
  const bytes = crypto.randomBytes(3000);
  bytes[0] = 0xff; // never UTF-8
  ok(await call("sandbox_write_file", { id, path: "/work/bin.dat", content: bytes.toString("base64"), encoding: "base64" }));
  const md5 = crypto.createHash("md5").update(bytes).digest("hex");
  expect(ok(await call("sandbox_exec", { id, command: "md5sum", args: ["/work/bin.dat"] })).stdout).toBe(`${md5}  /work/bin.dat\n`);
  const back = ok(await call("sandbox_read_file", { id, path: "/work/bin.dat", encoding: "base64" }));
  expect(back).toMatchObject({ encoding: "base64", bytes: 3000 });
  expect(Buffer.from(back.content, "base64").equals(bytes)).toBe(true);
  expect(refused(await call("sandbox_read_file", { id, path: "/work/bin.dat" }))).toMatch(/\/work\/bin.dat is not UTF-8 text \(3000 bytes\); read it with encoding "base64"/);
  ok(await call("sandbox_write_file", { id, path: "rel.txt", content: "relative\n" })); // against the working folder, /
  expect(ok(await call("sandbox_read_file", { id, path: "/rel.txt" })).content).toBe("relative\n");
  expect(ok(await call("sandbox_list_files", { id, path: "/work" }))).toEqual({
    path: "/work",
    total: 2,
    entries: [
      { name: "bin.dat", type: "file" },
      { name: "src", type: "directory" },
    ],
  });

  // Errors say what happened.
  expect(refused(await call("sandbox_read_file", { id, path: "/work/nope" }))).toMatch(/^ENOENT: no such file or folder .*'\/work\/nope'/);
  expect(refused(await call("sandbox_read_file", { id, path: "/work/src" }))).toMatch(/^EISDIR: a folder, not a file \(list it with sandbox_list_files\)/);
  expect(refused(await call("sandbox_list_files", { id, path: "/work/src/main.py" }))).toMatch(/^ENOTDIR: /);
  expect(refused(await call("sandbox_list_files", { id, path: "/nowhere" }))).toMatch(/^ENOENT: .*'\/nowhere'/);
  expect(refused(await call("sandbox_write_file", { id, path: "/work/bin.dat/x", content: "" }))).toMatch(/^(ENOTDIR|EEXIST): .*\/work\/bin.dat/);
  expect(refused(await call("sandbox_write_file", { id, path: "/x", content: "not base64!", encoding: "base64" }))).toMatch(/content: not valid base64/);

  // Past --max-file-bytes and --max-list-entries.
  ok(await call("sandbox_exec", { id, command: "sh", args: ["-c", "head -c 5000 /dev/zero > /work/big; mkdir /many; touch /many/f1 /many/f2 /many/f3 /many/f4 /many/f5 /many/f6 /many/f7"] }));
  expect(refused(await call("sandbox_read_file", { id, path: "/work/big", encoding: "base64" }))).toMatch(
    /refused: \/work\/big holds 5000 bytes, more than the 4096 bytes one call may carry \(--max-file-bytes, set by whoever started `krunbox mcp`.*sandbox_exec/,
  );
  expect(refused(await call("sandbox_write_file", { id, path: "/work/big2", content: "x".repeat(4097) }))).toMatch(/content is 4097 bytes, more than the 4096 .*--max-file-bytes/);
  expect(ok(await call("sandbox_exec", { id, command: "ls", args: ["/work"] })).stdout).not.toContain("big2");
  const many = ok(await call("sandbox_list_files", { id, path: "/many" }));
  expect(many.entries.map((e: { name: string }) => e.name)).toEqual(["f1", "f2", "f3", "f4", "f5"]);
  expect(many.total).toBe(7);
  expect(many.note).toMatch(/7 entries: only the first 5 by name are listed \(--max-list-entries/);

  expect(ok(await call("sandbox_stop", { id }))).toEqual({ stopped: id });
  expect(ok(await call("sandbox_list")).sandboxes).toEqual([]);
  expect(refused(await call("sandbox_exec", { id, command: "true" }))).toMatch(/has ended: sandbox_stop stopped it/);
  expect(vmProcesses()).toEqual([]);
});

it("runs sh code in a throwaway sandbox on the default image, or in a given one", async () => {
  const { call } = await connect();
  expect(ok(await call("sandbox_run_code", { language: "sh", code: "echo $((6 * 7)); exit 5" }))).toMatchObject({
    exitCode: 5,
    stdout: "42\n",
  });
  expect(ok(await call("sandbox_list")).sandboxes).toEqual([]);
  await waitFor("the throwaway sandbox's VM to end", () => vmProcesses().length === 0, 20_000);

  const { id } = ok(await call("sandbox_create"));
  ok(await call("sandbox_exec", { id, command: "sh", args: ["-c", "echo kept > /tmp/state"] }));
  expect(ok(await call("sandbox_run_code", { id, language: "sh", code: "cat /tmp/state" })).stdout).toBe("kept\n");
  expect(refused(await call("sandbox_run_code", { language: "ruby", code: "1" }))).toMatch(/language/);
});

describe("python", () => {
  let registry: Awaited<ReturnType<typeof startRegistry>>;
  const mark = crypto.randomUUID();
  beforeAll(async () => {
    registry = await startRegistry();
    // setup.sh debootstraps this root (minbase + python3-minimal).
    const root = path.join(packageRoot, "deps/debian/python-root");
    // A config of its own, so the image is never in the cache already (its layer may be).
    const { layout } = buildLayout([{ dir: root }], { Env: ["PATH=/usr/local/bin:/usr/bin:/bin", `MARK=${mark}`] }, ["amd64"], "zstd");
    await push(layout, `${registry.host}/debian/python:3`);
  }, 240_000);
  afterAll(() => registry?.stop());

  it("runs python code in a throwaway sandbox on the image --python-image names", async () => {
    const { client } = await connect("--python-image", `${registry.host}/debian/python:3`);
    const progress: number[] = [];
    const r = (await client.callTool(
      { name: "sandbox_run_code", arguments: { language: "python", code: "import os, sys\nprint(6 * 7, os.environ['MARK'])\nsys.exit(2)" } },
      undefined,
      { timeout: 170_000, onprogress: (p) => progress.push(p.progress) },
    )) as Result;
    expect(ok(r)).toMatchObject({ exitCode: 2, stdout: `42 ${mark}\n`, stderr: "" });
    // The pull reported its bytes as it went.
    expect(progress.length).toBeGreaterThan(1);
    expect(progress.every((p, i) => i === 0 || p > progress[i - 1])).toBe(true);
  }, 300_000);

  it("pulls model-named images only from --allow-registry registries, checking every connection by address", async () => {
    const port = registry.host.split(":")[1];
    // By default any registry, but never one at a special address: the host's loopback is refused before any
    // request (the image is even in the cache), by name and through a name that leads there.
    const open = await connect();
    for (const host of [registry.host, `localhost:${port}`])
      expect(refused(await open.call("sandbox_create", { image: `${host}/debian/python:3` }))).toMatch(
        new RegExp(`refused: ${host} is at (127\\.0\\.0\\.1|::1), which is loopback: .*only for registries --allow-registry names \\(none; set by whoever`),
      );
    expect(vmProcesses()).toEqual([]);

    // Listed, it serves model-named images, pulled through the checked connections.
    const mark2 = crypto.randomUUID();
    const root = path.join(packageRoot, "deps/debian/python-root");
    const { layout } = buildLayout([{ dir: root }], { Env: ["PATH=/usr/bin:/bin", `MARK=${mark2}`] }, ["amd64"], "zstd");
    await push(layout, `${registry.host}/debian/python:model`);
    const listed = await connect("--allow-registry", registry.host);
    const { id } = ok(await listed.call("sandbox_create", { image: `${registry.host}/debian/python:model` }));
    expect(ok(await listed.call("sandbox_run_code", { id, language: "python", code: "import os; print(os.environ['MARK'])" })).stdout).toBe(`${mark2}\n`);
    expect(refused(await listed.call("sandbox_create", { image: "alpine:3.20" }))).toMatch(
      new RegExp(`image "alpine:3.20" comes from docker.io, but this server pulls only from ${registry.host} \\(--allow-registry, set by whoever`),
    );

    // A listed registry that redirects elsewhere on the host's loopback: the redirect is never followed.
    const sink = await loopbackServer(http.createServer((req, res) => res.end("{}")));
    let asked = 0;
    const bounce = await loopbackServer(
      http.createServer((req, res) => {
        asked++;
        res.writeHead(307, { location: `http://127.0.0.1:${sink.port}${req.url}` }).end();
      }),
    );
    try {
      const redirected = await connect("--allow-registry", `127.0.0.1:${bounce.port}`);
      expect(refused(await redirected.call("sandbox_create", { image: `127.0.0.1:${bounce.port}/team/app:1` }))).toMatch(
        new RegExp(`cannot reach 127.0.0.1:${bounce.port}: refused: 127.0.0.1:${sink.port} is at 127.0.0.1, which is loopback`),
      );
      expect(asked).toBeGreaterThan(0);
      expect(sink.connections).toBe(0);
    } finally {
      await Promise.all([sink.close(), bounce.close()]);
    }
  }, 300_000);
});

describe("network", () => {
  let web: Awaited<ReturnType<typeof loopbackServer>>;
  let other: Awaited<ReturnType<typeof loopbackServer>>;
  beforeAll(async () => {
    web = await loopbackServer(http.createServer((req, res) => res.end(`hello from the host ${req.url}\n`)));
    other = await loopbackServer(net.createServer((c) => c.end("you should not see this\n")));
  });
  afterAll(() => Promise.all([web.close(), other.close()]));
  const toHost = (port: number) => ({ allow: [`api.test:${port}`], hosts: { "api.test": "127.0.0.1" } });

  it("gives sandboxes no more network than --network and --allow-host allow", async () => {
    const none = await connect();
    for (const network of ["public", toHost(web.port)])
      expect(refused(await none.call("sandbox_create", { network }))).toMatch(/this server gives sandboxes no network \(--network none, set by whoever/);
    // onConnect is a function: not the model's to send.
    expect(refused(await none.call("sandbox_create", { network: { allow: ["example.com"], onConnect: "x" } }))).toMatch(/onConnect/);

    const list = await connect("--network", "allow-list");
    expect(list.client.getInstructions()).toMatch(/network: allow-list policies only, to destinations within \*;/);
    expect(refused(await list.call("sandbox_create", { network: "public" }))).toMatch(
      /network "public" lets a sandbox reach any public destination, but this server allows only policies that list their destinations \(--network allow-list/,
    );
    expect(refused(await list.call("sandbox_create", { network: { allow: ["*:443"] } }))).toMatch(/network.allow\[0\] "\*:443" lets a sandbox reach any/);
    // Special addresses only through --allow-host entries that name them, however the policy spells them.
    const loopback = /127.0.0.1 is loopback, which sandboxes of this server reach only through an --allow-host entry that names it: \* \(--allow-host/;
    expect(refused(await list.call("sandbox_create", { network: { allow: [`127.0.0.1:${web.port}`] } }))).toMatch(loopback);
    expect(refused(await list.call("sandbox_create", { network: { allow: ["::ffff:127.0.0.0/104"] } }))).toMatch(/is loopback/);
    expect(refused(await list.call("sandbox_create", { network: toHost(web.port) }))).toMatch(/"api.test:\d+" reaches 127.0.0.1 \(network.hosts maps api.test there\)/);
    expect(refused(await list.call("sandbox_create", { network: { allow: ["*.test"], hosts: { "db.test": "10.1.2.3" } } }))).toMatch(/10.1.2.3 is private/);
    expect(refused(await list.call("sandbox_create", { network: { allow: ["169.254.169.254"] } }))).toMatch(/is link-local/);

    const pub = await connect("--network", "public", "--allow-host", "*.example.com", "--allow-host", "151.101.0.0/16:443");
    expect(refused(await pub.call("sandbox_create", { network: "public" }))).toMatch(/network "public": it is outside the destinations this server lets sandboxes reach: \*\.example\.com, 151.101.0.0\/16:443 \(--allow-host/);
    for (const entry of ["example.org", "151.101.1.1", "151.102.0.1:443", "*.com"])
      expect(refused(await pub.call("sandbox_create", { network: { allow: [entry] } }))).toMatch(/outside the destinations/);
    expect(vmProcesses()).toEqual([]);
  });

  it("lets a sandbox reach a host server within --allow-host", async () => {
    const { call } = await connect("--network", "allow-list", "--allow-host", `127.0.0.1:${web.port}`);
    expect(refused(await call("sandbox_create", { network: { allow: ["pypi.org"] } }))).toMatch(
      new RegExp(`"pypi.org": it is outside the destinations this server lets sandboxes reach: 127.0.0.1:${web.port} \\(--allow-host`),
    );
    for (const network of [toHost(other.port), { allow: ["api.test"], hosts: { "api.test": "127.0.0.1" } }])
      expect(refused(await call("sandbox_create", { network }))).toMatch(/reaches 127.0.0.1 .*--allow-host/);

    const { id } = ok(await call("sandbox_create", { network: { ...toHost(web.port), deny: ["evil.test"] } }));
    expect(ok(await call("sandbox_list")).sandboxes).toEqual([expect.objectContaining({ id, network: "allow-list", ports: [] })]);
    expect(ok(await call("sandbox_exec", { id, command: "wget", args: ["-qO-", `http://api.test:${web.port}/hello`] }))).toMatchObject({
      exitCode: 0,
      stdout: "hello from the host /hello\n",
    });
    // What the policy does not allow, the runner refuses.
    expect(ok(await call("sandbox_exec", { id, command: "sh", args: ["-c", `nc 127.0.0.1 ${other.port} </dev/null`] })).exitCode).not.toBe(0);
    expect(other.connections).toBe(0);
  });

  it("publishes guest ports only with --allow-publish, on the host's loopback and free ports", async () => {
    const bare = await connect();
    expect(refused(await bare.call("sandbox_create", { ports: ["8000"] }))).toMatch(/ports would publish guest ports on the host, .*no --allow-publish, set by whoever/);

    const { call, client } = await connect("--allow-publish");
    expect(client.getInstructions()).toMatch(/published ports: on the host's loopback, on free ports/);
    expect(refused(await call("sandbox_create", { ports: [`${other.port}:80`] }))).toMatch(
      new RegExp(`ports\\[0\\] asks for host port ${other.port}; .*give the guest port alone, e.g. "80"`),
    );
    expect(refused(await call("sandbox_create", { ports: ["0.0.0.0:0:80"] }))).toMatch(/ports\[0\] listens on 0.0.0.0; .*--allow-publish/);
    expect(vmProcesses()).toEqual([]);

    const { id, ports } = ok(await call("sandbox_create", { ports: [{ guest: 8000 }] }));
    expect(ports).toEqual([{ guest: 8000, host: expect.any(Number), hostIp: "127.0.0.1" }]);
    ok(await call("sandbox_write_file", { id, path: "/www/index.html", content: "served by the guest\n" }));
    // The server runs for as long as its call does.
    const serving = call("sandbox_exec", { id, command: "httpd", args: ["-f", "-p", "127.0.0.1:8000", "-h", "/www"], timeoutMs: 60_000 });
    const body = await waitFor("the guest's server", () => fetch(`http://127.0.0.1:${ports[0].host}/`).then((r) => r.text(), () => undefined), 30_000);
    expect(body).toBe("served by the guest\n");
    ok(await call("sandbox_stop", { id }));
    await serving;
  });
});

it("mounts only the named volumes --allow-volume allows, by default the model's own mcp-*", async () => {
  const { call } = await connect();
  for (const volumes of [["pip-cache:/cache"], [{ type: "named", name: "other", target: "/x", readOnly: true }]])
    expect(refused(await call("sandbox_create", { volumes }))).toMatch(/named volume "(pip-cache|other)", but this server lets sandboxes use only the named volumes mcp-\* \(--allow-volume, set by whoever/);
  const first = ok(await call("sandbox_create", { volumes: ["mcp-state:/state"] })).id;
  ok(await call("sandbox_write_file", { id: first, path: "/state/kept", content: "kept\n" }));
  ok(await call("sandbox_stop", { id: first }));
  const second = ok(await call("sandbox_create", { volumes: ["mcp-state:/state:ro"] })).id;
  expect(ok(await call("sandbox_read_file", { id: second, path: "/state/kept" })).content).toBe("kept\n");
  ok(await call("sandbox_stop", { id: second }));
  await Volume.remove("mcp-state");

  const exact = await connect("--allow-volume", "pip-cache");
  expect(refused(await exact.call("sandbox_create", { volumes: ["mcp-state:/state"] }))).toMatch(/only the named volumes pip-cache \(--allow-volume/);
  const none = await connect("--allow-volume", "none");
  expect(refused(await none.call("sandbox_create", { volumes: ["mcp-state:/state"] }))).toMatch(/lets sandboxes use no named volumes \(--allow-volume, .*\); use a tmpfs volume$/);
});

it("creates the model's named volumes with the --volume-quota quota, enforced on the host", async () => {
  // The default: 1024 MiB.
  const { call } = await connect();
  ok(await call("sandbox_stop", { id: ok(await call("sandbox_create", { volumes: ["mcp-default:/v"] })).id }));
  expect((await Volume.get("mcp-default")).info).toMatchObject({ quotaMiB: 1024, labels: { "created-by": "krunbox mcp" } });

  const small = await connect("--volume-quota", "16");
  const { id } = ok(await small.call("sandbox_create", { volumes: ["mcp-small:/v"] }));
  const fill = ok(await small.call("sandbox_exec", { id, command: "sh", args: ["-c", "dd if=/dev/zero of=/v/big bs=1M count=32 2>&1 | grep -o 'No space left on device'"] }));
  expect(fill.stdout).toBe("No space left on device\n");
  ok(await small.call("sandbox_stop", { id }));

  const unbounded = await connect("--volume-quota", "none");
  ok(await unbounded.call("sandbox_stop", { id: ok(await unbounded.call("sandbox_create", { volumes: ["mcp-free:/v"] })).id }));
  expect((await Volume.get("mcp-free")).info.quotaMiB).toBeUndefined();
  // A volume that exists is used as it is.
  ok(await small.call("sandbox_stop", { id: ok(await small.call("sandbox_create", { volumes: ["mcp-free:/v"] })).id }));
  expect((await Volume.get("mcp-free")).info.quotaMiB).toBeUndefined();
  for (const name of ["mcp-default", "mcp-small", "mcp-free"]) await Volume.remove(name);
});

it("limits the cpus of a sandbox to --max-cpus", async () => {
  expect(refused(await (await connect()).call("sandbox_create", { cpus: 8 }))).toMatch(/cpus 8 is more than the 4 a sandbox may have \(--max-cpus, set by whoever/);
  const { call } = await connect("--max-cpus", "1");
  expect(refused(await call("sandbox_create", { cpus: 2 }))).toMatch(/cpus 2 is more than the 1 a sandbox may have/);
  expect(vmProcesses()).toEqual([]);
});

it("binds host folders only inside --allow-bind, after resolving symlinks", async () => {
  const allowed = tempDir();
  const outside = tempDir();
  fs.mkdirSync(path.join(allowed, "sub"));
  fs.writeFileSync(path.join(allowed, "sub/f"), "inside\n");
  fs.writeFileSync(path.join(outside, "secret"), "secret\n");
  fs.symlinkSync(outside, path.join(allowed, "link"));
  const readOnly = tempDir();
  fs.writeFileSync(path.join(readOnly, "g"), "read-only\n");
  const { call, client } = await connect("--allow-bind", allowed, "--allow-bind", `${readOnly}:ro`);
  expect(client.getInstructions()).toContain(`only inside ${fs.realpathSync(allowed)}, ${fs.realpathSync(readOnly)} (read-only)`);

  const escapes = [
    [`${outside}:/x`],
    [{ type: "bind", source: path.join(allowed, "link"), target: "/x" }],
    [`${allowed}/link:/x:ro`],
    [{ type: "bind", source: `${allowed}/../${path.basename(outside)}`, target: "/x" }],
    ["mcp-ok:/n", `${outside}:/x`],
  ];
  for (const volumes of escapes) {
    const why = refused(await call("sandbox_create", { volumes }));
    expect(why).toContain("--allow-bind");
    expect(why).toContain(fs.realpathSync(allowed));
  }
  expect(refused(await call("sandbox_create", { volumes: [`${allowed}/link:/x`] }))).toContain(`leads to ${fs.realpathSync(outside)}`);
  expect(refused(await call("sandbox_create", { volumes: [`${readOnly}:/ro`] }))).toMatch(/read-write, .* only read-only \(--allow-bind DIR:ro/);
  expect(vmProcesses()).toEqual([]);

  const { id } = ok(
    await call("sandbox_create", {
      volumes: [`${allowed}/sub:/data`, { type: "bind", source: readOnly, target: "/ro", readOnly: true }, { type: "tmpfs", target: "/scratch" }],
    }),
  );
  const r = ok(await call("sandbox_exec", { id, command: "sh", args: ["-c", "cat /data/f /ro/g; echo new > /data/new; echo x > /ro/x"] }));
  expect(r).toMatchObject({ exitCode: 1, stdout: "inside\nread-only\n", stderr: expect.stringMatching(/Read-only file system/) });
  expect(fs.readFileSync(path.join(allowed, "sub/new"), "utf8")).toBe("new\n");
  expect(fs.existsSync(path.join(readOnly, "x"))).toBe(false);

  // Without --allow-bind no host folder at all.
  const bare = await connect();
  expect(refused(await bare.call("sandbox_create", { volumes: [`${allowed}/sub:/data`] }))).toMatch(/may share no host folders \(no --allow-bind/);
});

it("enforces --max-sandboxes and --max-memory, counting sandboxes still booting", async () => {
  const { call } = await connect("--max-sandboxes", "2", "--max-memory", "768");
  expect(refused(await call("sandbox_create", { memoryMiB: 1024 }))).toMatch(/past the 768 MiB .*--max-memory, set by whoever started `krunbox mcp`/);
  const a = ok(await call("sandbox_create")).id; // 512 MiB
  expect(refused(await call("sandbox_create"))).toMatch(/1024 MiB, past the 768 MiB/);
  ok(await call("sandbox_create", { memoryMiB: 256 }));
  expect(refused(await call("sandbox_create", { memoryMiB: 64 }))).toMatch(/at most 2 sandbox\(es\) at once \(--max-sandboxes/);
  expect(refused(await call("sandbox_run_code", { language: "sh", code: "true" }))).toMatch(/--max-sandboxes/);
  expect(ok(await call("sandbox_list")).sandboxes).toHaveLength(2);
  ok(await call("sandbox_stop", { id: a }));

  // One slot left, two creations at once: exactly one gets it.
  const both = await Promise.all([call("sandbox_create", { memoryMiB: 128 }), call("sandbox_create", { memoryMiB: 128 })]);
  expect(both.filter((r) => !r.isError)).toHaveLength(1);
  expect(refused(both.find((r) => r.isError)!)).toMatch(/--max-sandboxes/);
  expect(ok(await call("sandbox_list")).sandboxes).toHaveLength(2);
});

it("stops a sandbox that no tool call used for --idle-timeout, never one in use", async () => {
  const { call } = await connect("--idle-timeout", "2");
  const { id } = ok(await call("sandbox_create"));
  // A call longer than the idle timeout keeps it alive.
  expect(ok(await call("sandbox_exec", { id, command: "sleep", args: ["4"] })).exitCode).toBe(0);
  expect(ok(await call("sandbox_exec", { id, command: "true" })).exitCode).toBe(0);
  await waitFor("the idle sandbox to stop", () => vmProcesses().length === 0, 20_000);
  expect(ok(await call("sandbox_list")).sandboxes).toEqual([]);
  expect(refused(await call("sandbox_exec", { id, command: "true" }))).toMatch(/no tool call used it for 2 s.*--idle-timeout 2/);
});

it("stops every sandbox when the client is killed", async () => {
  // A client in its own process: it dies by SIGKILL, so only the server's stdin says so.
  const source = `
    import { Client } from "@modelcontextprotocol/sdk/client/index.js";
    import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
    const transport = new StdioClientTransport({ command: process.execPath, args: [${JSON.stringify(cli)}, "mcp"], env: process.env, stderr: "inherit" });
    const client = new Client({ name: "doomed", version: "1" });
    await client.connect(transport);
    for (let i = 0; i < 2; i++) await client.callTool({ name: "sandbox_create", arguments: {} });
    console.log(transport.pid);
    setInterval(() => {}, 1000);`;
  const clientProc = spawn(process.execPath, ["--input-type=module", "-e", source], { cwd: packageRoot, env, stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  clientProc.stdout.on("data", (d) => (out += d));
  const serverPid = Number(await waitFor("the client's sandboxes", () => /^\d+\n/.test(out) && out.trim(), 120_000));
  expect(vmProcesses().filter((p) => p.comm.startsWith("qemu"))).toHaveLength(2);
  clientProc.kill("SIGKILL");
  await waitFor("the server to stop its sandboxes", () => vmProcesses().length === 0, 20_000);
  await waitFor("the server to exit", () => !alive(serverPid), 10_000);
});

it("leaves no VM behind when the server is killed, by SIGTERM or SIGKILL", async () => {
  for (const signal of ["SIGTERM", "SIGKILL"] as const) {
    const { call, transport } = await connect();
    ok(await call("sandbox_create"));
    const pid = transport.pid!;
    expect(vmProcesses().length).toBeGreaterThan(0);
    process.kill(pid, signal);
    await waitFor(`no VM after ${signal}`, () => vmProcesses().length === 0, 20_000);
    await waitFor("the server to exit", () => !alive(pid), 10_000);
  }
});
