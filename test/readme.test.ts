// The README's main example (the first code block under "## Use") runs as
// pasted: type-checked against the package's types, then run with Node,
// importing "krunbox" from a project where it is installed (a link here).
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import ts from "typescript";
import { expect, it } from "vitest";
import { tempDir, vmProcesses } from "./helpers.js";

const root = path.resolve(import.meta.dirname, "..");

function useSnippet(): string {
  const readme = fs.readFileSync(path.join(root, "README.md"), "utf8");
  const block = /^## Use\n\n```ts\n([\s\S]*?)^```$/m.exec(readme);
  if (!block) throw new Error('README.md has no ```ts block right under "## Use"');
  return block[1];
}

it("runs the README's Use example as pasted", () => {
  const project = tempDir();
  fs.mkdirSync(path.join(project, "node_modules"));
  fs.symlinkSync(root, path.join(project, "node_modules/krunbox"));
  fs.writeFileSync(path.join(project, "package.json"), JSON.stringify({ type: "module" }));
  const source = useSnippet();
  fs.writeFileSync(path.join(project, "use.ts"), source);

  const flags = ["--noEmit", "--strict", "--module", "NodeNext", "--moduleResolution", "NodeNext", "--target", "ES2022", "--lib", "ES2022,ESNext.Disposable"];
  const tsc = spawnSync(process.execPath, [path.join(root, "node_modules/typescript/bin/tsc"), ...flags, "--typeRoots", path.join(root, "node_modules/@types"), "--types", "node", "use.ts"], {
    cwd: project,
    encoding: "utf8",
  });
  expect({ status: tsc.status, errors: tsc.stdout }).toEqual({ status: 0, errors: "" });

  const js = ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } }).outputText;
  fs.writeFileSync(path.join(project, "use.mjs"), js);
  const run = spawnSync(process.execPath, ["use.mjs"], { cwd: project, encoding: "utf8", timeout: 120_000, env: process.env });
  expect({ status: run.status, stderr: run.stderr }).toEqual({ status: 0, stderr: "" });
  // What it prints: the live output, then what cat echoed.
  expect(run.stdout).toBe("1\n2\nhello\n");
  expect(vmProcesses()).toEqual([]);
}, 180_000);
