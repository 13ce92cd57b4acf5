// krunbox volume create|ls|inspect|rm.
import type { Command } from "commander";
import { Volume, type VolumeInfo } from "../volumes/volumes.js";
import { inFlagTerms, keyValue, repeatable, wholeNumber } from "./args.js";

const ORIGIN: Record<NonNullable<VolumeInfo["origin"]>, string> = {
  create: "volume create",
  mount: "created on first mount",
};

export function volumeCommand(parent: Command): Command {
  const volume = parent.command("volume").description("manage named volumes (~/.krunbox/volumes)");
  volume
    .command("create")
    .description("create named volumes")
    .argument("<name...>", "volume names (letters, digits, '_', '.', '-')")
    .option("--quota <MiB>", "hard size limit in MiB (needs root)", wholeNumber)
    .option("--label <KEY=VALUE>", "a label (repeatable)", repeatable(keyValue()))
    .action(async (names: string[], flags: { quota?: number; label?: [string, string][] }) => {
      for (const name of names) {
        try {
          console.log((await Volume.create(name, { quotaMiB: flags.quota, labels: Object.fromEntries(flags.label ?? []) })).name);
        } catch (err) {
          throw inFlagTerms(err, (field) => (field === "quotaMiB" ? `--quota ${flags.quota}` : field.startsWith("labels.") ? "--label" : undefined));
        }
      }
    });
  volume
    .command("ls")
    .description("list named volumes: name, quota, created, origin, labels")
    .action(async () => {
      for (const v of await Volume.list())
        console.log(
          [v.name, v.quotaMiB === undefined ? "-" : `${v.quotaMiB}MiB`, v.created, v.origin ? ORIGIN[v.origin] : "-", JSON.stringify(v.labels)].join("\t"),
        );
    });
  volume
    .command("inspect")
    .description("print volumes' details as JSON")
    .argument("<name...>")
    .action(async (names: string[]) => {
      for (const name of names) console.log(JSON.stringify((await Volume.get(name)).info, null, 2));
    });
  volume
    .command("rm")
    .description("remove volumes and their data (refused while a sandbox uses one)")
    .argument("<name...>")
    .option("--force", "remove even while a sandbox uses it")
    .action(async (names: string[], flags: { force?: boolean }) => {
      for (const name of names) await Volume.remove(name, { force: flags.force });
    });
  return volume;
}
