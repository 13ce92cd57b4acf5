// The network and ports options as users write them (no VM): every form
// is parsed into what the runner enforces, and bad ones are ConfigErrors
// naming the entry.
import { expect, it } from "vitest";
import { ConfigError } from "../lib/index.js";
import { parseRule, resolveNetwork } from "../lib/network/policy.js";
import { resolvePorts } from "../lib/network/ports.js";

it("parses every form of allow and deny entry", () => {
  expect(parseRule("pypi.org")).toEqual({ kind: "name", value: "pypi.org", port: undefined, text: "pypi.org" });
  expect(parseRule("PyPI.org")).toMatchObject({ kind: "name", value: "pypi.org", text: "PyPI.org" });
  expect(parseRule("*.pythonhosted.org")).toMatchObject({ kind: "suffix", value: ".pythonhosted.org" });
  expect(parseRule("example.com:443")).toMatchObject({ kind: "name", value: "example.com", port: 443 });
  expect(parseRule("203.0.113.0/24")).toMatchObject({ kind: "cidr", value: "203.0.113.0/24" });
  expect(parseRule("203.0.113.0/24:443")).toMatchObject({ kind: "cidr", value: "203.0.113.0/24", port: 443 });
  expect(parseRule("127.0.0.1:8080")).toMatchObject({ kind: "cidr", value: "127.0.0.1", port: 8080 });
  expect(parseRule("2001:db8::/32")).toMatchObject({ kind: "cidr", value: "2001:db8::/32" });
  expect(parseRule("[2001:db8::1]:443")).toMatchObject({ kind: "cidr", value: "2001:db8::1", port: 443 });
  expect(parseRule("*")).toMatchObject({ kind: "any" });
  expect(parseRule("*:443")).toMatchObject({ kind: "any", port: 443 });
  for (const bad of ["", "not a host", "a..b", "example.com:0", "example.com:70000", "1.2.3.4/33", "1.2.3", "*.", "[1.2.3.4]:80",
    "http://example.com", "example.com:443:1", "a_b?.c"])
    expect(parseRule(bad), bad).toBeUndefined();
});

it("resolves none, public and a policy", () => {
  expect(resolveNetwork(undefined)).toBeUndefined();
  expect(resolveNetwork("none")).toBeUndefined();
  expect(resolveNetwork("public")).toEqual({ allow: [{ kind: "any", text: "*" }], deny: [], hosts: {} });
  const onConnect = () => true;
  expect(resolveNetwork({ allow: ["api.test:8080"], deny: ["*.evil.test"], hosts: { "API.test": "127.0.0.1" }, onConnect })).toEqual({
    allow: [{ kind: "name", value: "api.test", port: 8080, text: "api.test:8080" }],
    deny: [{ kind: "suffix", value: ".evil.test", port: undefined, text: "*.evil.test" }],
    hosts: { "api.test": ["127.0.0.1"] },
    onConnect,
  });
  expect(() => resolveNetwork({ deny: ["ok.test", "bad entry"] })).toThrow(ConfigError);
  expect(() => resolveNetwork({ deny: ["ok.test", "bad entry"] })).toThrow(/network\.deny\[1\]: "bad entry"/);
  expect(() => resolveNetwork({ hosts: { "a.test": ["127.0.0.1", "nope"] } })).toThrow(/network\.hosts\.a\.test: "nope"/);
});

it("parses published ports", () => {
  expect(resolvePorts(["8080:80", "80", 81, "0.0.0.0:9000:90", "[::1]:9001:91", { guest: 8000, host: 0, hostIp: "127.0.0.1" }, { guest: 22 }])).toEqual([
    { hostIp: "127.0.0.1", hostPort: 8080, guestPort: 80 },
    { hostIp: "127.0.0.1", hostPort: 0, guestPort: 80 },
    { hostIp: "127.0.0.1", hostPort: 0, guestPort: 81 },
    { hostIp: "0.0.0.0", hostPort: 9000, guestPort: 90 },
    { hostIp: "::1", hostPort: 9001, guestPort: 91 },
    { hostIp: "127.0.0.1", hostPort: 0, guestPort: 8000 },
    { hostIp: "127.0.0.1", hostPort: 0, guestPort: 22 },
  ]);
  for (const bad of ["x:80", "80:", "1.2.3.4:80", "8080:0", "70000:80", "localhost:80:80"])
    expect(() => resolvePorts([bad]), bad).toThrow(/ports\[0\]/);
  expect(() => resolvePorts([{ guest: 80, hostIp: "localhost" }])).toThrow(/ports\[0\]\.hostIp/);
});
