// krunbox image pull|ls|rm|prune.
import { parseArgs } from "node:util";
import { ImageNotFoundError } from "../errors.js";
import { listImages, pruneImages, pullImage, removeImage } from "../images/cache.js";
import { usage } from "./args.js";
import { progressBar } from "./progress.js";

export async function image(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv.slice(1),
    options: { always: { type: "boolean" }, insecure: { type: "boolean" } },
    allowPositionals: true,
  });
  switch (argv[0]) {
    case "pull":
      for (const ref of positionals) {
        const img = await pullImage(ref, { pullPolicy: values.always ? "always" : "if-missing", insecure: values.insecure, onProgress: progressBar(ref) });
        console.log(`${img.reference} ${img.digest}`);
      }
      return positionals.length ? 0 : 2;
    case "ls":
      for (const img of listImages()) console.log(`${img.reference}\t${img.digest}`);
      return 0;
    case "rm":
      for (const ref of positionals) if (!removeImage(ref)) throw new ImageNotFoundError(ref);
      return positionals.length ? 0 : 2;
    case "prune":
      console.log(`freed ${(pruneImages() / 1048576).toFixed(1)} MiB`);
      return 0;
    default:
      console.error(usage);
      return 2;
  }
}
