// krunbox volume create|ls|inspect|rm.
import { parseArgs } from "node:util";
import { Volume } from "../volumes/volumes.js";
import { keyValues, usage } from "./args.js";

export async function volume(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv.slice(1),
    options: { label: { type: "string", multiple: true }, quota: { type: "string" }, force: { type: "boolean" } },
    allowPositionals: true,
  });
  switch (argv[0]) {
    case "create":
      for (const name of positionals) {
        const quotaMiB = values.quota === undefined ? undefined : Number(values.quota);
        console.log((await Volume.create(name, { quotaMiB, labels: keyValues(values.label, "--label") })).name);
      }
      return positionals.length ? 0 : 2;
    case "ls":
      for (const v of await Volume.list())
        console.log(`${v.name}\t${v.quotaMiB === undefined ? "-" : `${v.quotaMiB}MiB`}\t${v.created}\t${JSON.stringify(v.labels)}`);
      return 0;
    case "inspect":
      for (const name of positionals) console.log(JSON.stringify((await Volume.get(name)).info, null, 2));
      return positionals.length ? 0 : 2;
    case "rm":
      for (const name of positionals) await Volume.remove(name, { force: values.force });
      return positionals.length ? 0 : 2;
    default:
      console.error(usage);
      return 2;
  }
}
