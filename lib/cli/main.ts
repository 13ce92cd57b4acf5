// krunbox CLI: dispatches to one module per command.
import { KrunboxError } from "../errors.js";
import { usage } from "./args.js";
import { doctor } from "./doctor.js";
import { image } from "./image.js";
import { run } from "./run.js";
import { volume } from "./volume.js";

export async function main(argv: string[]): Promise<number> {
  try {
    if (argv[0] === "run") return await run(argv.slice(1));
    if (argv[0] === "volume") return await volume(argv.slice(1));
    if (argv[0] === "image") return await image(argv.slice(1));
    if (argv[0] === "doctor" && argv.slice(1).every((a) => a === "--boot")) return await doctor({ boot: argv.includes("--boot") });
    // Loaded on demand: the MCP SDK is big, and only this command needs it.
    if (argv[0] === "mcp") return await (await import("./mcp.js")).mcp(argv.slice(1));
    console.error(usage);
    return 2;
  } catch (err) {
    if (err instanceof KrunboxError) {
      console.error(`krunbox: ${err.message}`);
      return 125;
    }
    throw err;
  }
}
