import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { defineConfig } from "vitest/config";

// Every test run gets its own krunbox home, run folder and temporary
// folder, so leak checks see only what this run created, and
// test/global-setup.ts removes all of it, whatever the tests left.
const base = fs.mkdtempSync(path.join(os.tmpdir(), "krunbox-test-"));
process.env.KRUNBOX_TEST_BASE = base;
process.env.KRUNBOX_HOME = path.join(base, "home");
process.env.KRUNBOX_RUN_DIR = path.join(base, "run");
// Like /tmp (the unprivileged tests' user makes its folders there too).
fs.chmodSync(base, 0o711);
process.env.TMPDIR = path.join(base, "tmp");
fs.mkdirSync(process.env.TMPDIR, { mode: 0o1777 });
fs.chmodSync(process.env.TMPDIR, 0o1777);

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Real VMs under TCG on a 2-core machine: one file at a time.
    fileParallelism: false,
    testTimeout: 180_000,
    hookTimeout: 60_000,
    globalSetup: ["test/global-setup.ts"],
  },
});
