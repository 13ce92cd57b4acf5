import { execFileSync } from "node:child_process";
import fs from "node:fs";

export default function setup() {
  return () => {
    const base = process.env.KRUNBOX_TEST_BASE!;
    // A failed quota test may leave a volume's image mounted under the base.
    for (const line of fs.readFileSync("/proc/mounts", "utf8").split("\n")) {
      const point = line.split(" ")[1];
      if (point?.startsWith(base)) execFileSync("umount", ["-l", point]);
    }
    fs.rmSync(base, { recursive: true, force: true });
  };
}
