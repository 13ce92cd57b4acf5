// The share server against a hostile guest root: no device node and no
// setuid/setgid file reaches a host folder, whatever kind of share it is
// (bind volume, named volume, read-write root). Only harmless numbers: `c 1 3`
// is the null device, and nothing here opens a device node.
import fs from "node:fs";
import path from "node:path";
import { expect, it } from "vitest";
import { bootVm, Sandbox, Volume } from "../lib/index.js";
import { defaultImage } from "../lib/vm/runtime.js";
import { attackScript, expectSpecialFilesRefused, hostFolder, privileged, statuses, tempDir } from "./helpers.js";

it("refuses device nodes and setuid/setgid files in bind and named volumes", async () => {
  const bind = hostFolder(tempDir());
  const vol = await Volume.create("special-files");
  hostFolder(vol.info.path);
  try {
    await using sb = await Sandbox.create({ volumes: [`${bind}:/bind`, "special-files:/named"] });
    for (const [guest, host] of [["/bind", bind], ["/named", vol.info.path]]) {
      const r = await sb.exec("sh", ["-c", attackScript(guest)]);
      expectSpecialFilesRefused(statuses(r.stdout));
      expect(privileged(host), host).toEqual([]);
      expect(fs.lstatSync(path.join(host, "fifo")).isFIFO()).toBe(true);
      expect(fs.statSync(path.join(host, "hostfile")).mode & 0o7777).toBe(0o755);
    }
  } finally {
    await Volume.remove("special-files", { force: true });
  }
});

it("refuses them in a read-write root too", async () => {
  const root = tempDir();
  fs.cpSync(defaultImage(), root, { recursive: true, verbatimSymlinks: true });
  hostFolder(root);
  const r = await bootVm({ rootPath: root, rootReadOnly: false, command: ["/bin/sh", "-c", attackScript("/")] });
  expect(r.exitCode).toBe(0);
  expectSpecialFilesRefused(statuses(r.console));
  expect(privileged(root)).toEqual([]);
});
