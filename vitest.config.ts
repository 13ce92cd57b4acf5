import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { defineConfig } from "vitest/config";

// Every test run gets its own krunbox home and run folder, so leak checks
// see only what this run created (test/global-setup.ts removes them).
const base = fs.mkdtempSync(path.join(os.tmpdir(), "krunbox-test-"));
process.env.KRUNBOX_TEST_BASE = base;
process.env.KRUNBOX_HOME = path.join(base, "home");
process.env.KRUNBOX_RUN_DIR = path.join(base, "run");

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
