import fs from "node:fs";

export default function setup() {
  return () => fs.rmSync(process.env.KRUNBOX_TEST_BASE!, { recursive: true, force: true });
}
