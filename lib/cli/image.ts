// krunbox image pull|ls|rm|prune.
import type { Command } from "commander";
import { ImageNotFoundError } from "../errors.js";
import { listImages, pruneImages, pullImage, removeImage } from "../images/cache.js";
import { progressBar } from "./progress.js";

export function imageCommand(parent: Command): Command {
  const image = parent.command("image").description("manage the image cache (~/.krunbox/images)");
  image
    .command("pull")
    .description("pull images into the cache")
    .argument("<ref...>", "image references (alpine:3.20, registry:5000/team/app@sha256:...)")
    .option("--always", "pull even if the image is cached")
    .option("--insecure", "plain HTTP to a registry that is not on this machine")
    .action(async (refs: string[], flags: { always?: boolean; insecure?: boolean }) => {
      for (const ref of refs) {
        const img = await pullImage(ref, { pullPolicy: flags.always ? "always" : "if-missing", insecure: flags.insecure, onProgress: progressBar(ref) });
        console.log(`${img.reference} ${img.digest}`);
      }
    });
  image
    .command("ls")
    .description("list cached images")
    .action(() => {
      for (const img of listImages()) console.log(`${img.reference}\t${img.digest}`);
    });
  image
    .command("rm")
    .description("remove images from the cache (refused while a sandbox runs on one)")
    .argument("<ref...>", "image references or digests")
    .action((refs: string[]) => {
      for (const ref of refs) if (!removeImage(ref)) throw new ImageNotFoundError(ref);
    });
  image
    .command("prune")
    .description("delete downloaded blobs that cached images no longer need")
    .action(() => console.log(`freed ${(pruneImages() / 1048576).toFixed(1)} MiB`));
  return image;
}
