import { execFileSync } from "node:child_process";
import fs from "node:fs";

export default function setup() {
  return () => {
    const base = process.env.KRUNBOX_TEST_BASE!;
    // A failed quota test may leave a volume's image mounted under the base
    // (deepest first; a lazy unmount of a parent may take its children along).
    const points = fs
      .readFileSync("/proc/mounts", "utf8")
      .split("\n")
      .map((line) => line.split(" ")[1])
      .filter((point) => point?.startsWith(base))
      .reverse();
    for (const point of points) {
      try {
        execFileSync("umount", ["-l", point], { stdio: "ignore" });
      } catch {
        // gone with its parent
      }
    }
    fs.rmSync(base, { recursive: true, force: true });
  };
}
