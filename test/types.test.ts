// The public types, checked by the compiler: test/types/api.ts uses the API
// as typed and marks each misuse that must not compile.
import { spawnSync } from "node:child_process";
import { expect, it } from "vitest";

it("types exec results, options, events and read-only state", () => {
  const flags = ["--noEmit", "--strict", "--module", "NodeNext", "--moduleResolution", "NodeNext", "--target", "ES2022"];
  const tsc = spawnSync(process.execPath, ["node_modules/typescript/bin/tsc", ...flags, "--lib", "ES2022,ESNext.Disposable", "--types", "node", "--skipLibCheck", "test/types/api.ts"], {
    encoding: "utf8",
  });
  expect({ status: tsc.status, errors: tsc.stdout }).toEqual({ status: 0, errors: "" });
}, 120_000);
