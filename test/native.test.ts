// The native unit tests (test/native/*.cc, doctest): QEMU arguments, the VM
// and guest configs, control lines, the confined host-side file operations.
// Built by setup with everything else.
import { spawnSync } from "node:child_process";
import path from "node:path";
import { expect, it } from "vitest";
import { packageRoot } from "../lib/vm/runtime.js";

it("passes the native unit tests", () => {
  const r = spawnSync(path.join(packageRoot, "build/Release/krunbox-native-tests"), [], { encoding: "utf8", timeout: 60_000 });
  if (r.status !== 0) console.log(r.stdout, r.stderr);
  expect(r.error).toBeUndefined();
  expect(r.stdout).toMatch(/test cases: *\d+ \| *\d+ passed \| 0 failed/);
  expect(r.status).toBe(0);
});
