// Host paths of shares and symbolic links: a path reached through a link
// is shared as the folder it leads to (resolved once, before the runner
// starts; the runner refuses a link in any part of the resolved path, see
// test/native/staging_test.cc), and a caller that checked real paths itself
// (krunbox mcp) gets a folder swapped for a link refused, never followed.
import fs from "node:fs";
import path from "node:path";
import { expect, it } from "vitest";
import { ConfigError, Sandbox } from "../lib/index.js";
import { shareOnlyCanonicalPaths } from "../lib/vm/vm.js";
import { tempDir, vmProcesses } from "./helpers.js";

it("shares the folder a link leads to; once only canonical paths are allowed, refuses a path that became a link", async () => {
  const real = tempDir();
  fs.writeFileSync(path.join(real, "f"), "through-the-link");
  const link = path.join(tempDir(), "link");
  fs.symlinkSync(real, link);
  {
    await using sb = await Sandbox.create({ volumes: [`${link}:/data:ro`] });
    expect((await sb.exec("cat", ["/data/f"])).stdout).toBe("through-the-link");
    await sb.stop();
  }

  // What krunbox mcp does: its --allow-bind check resolved the real path,
  // which a guest then swapped for a link to elsewhere.
  shareOnlyCanonicalPaths();
  const checked = path.join(tempDir(), "checked");
  fs.mkdirSync(checked);
  fs.renameSync(checked, `${checked}.d`);
  fs.symlinkSync(real, checked);
  const err = await Sandbox.create({ volumes: [`${checked}:/data`] }).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(ConfigError);
  expect((err as ConfigError).field).toBe("shares[0].hostPath");
  expect((err as Error).message).toContain(`now leads to ${real}`);
  expect(vmProcesses()).toEqual([]);
}, 120_000);
