// krunbox CLI: commander parses, one module per command acts.
// Exit status: 0 for help and --version, 125 for a usage error or a
// krunbox error, otherwise the status of what ran (run: the guest's).
import fs from "node:fs";
import path from "node:path";
import { Command, CommanderError } from "commander";
import { KrunboxError } from "../errors.js";
import { packageRoot } from "../vm/runtime.js";
import { doctor } from "./doctor.js";
import { imageCommand } from "./image.js";
import { mcpCommand } from "./mcp.js";
import { runCommand } from "./run.js";
import { volumeCommand } from "./volume.js";

/** What a command's action reports: the status krunbox exits with. */
export type SetStatus = (status: number) => void;

const USAGE_STATUS = 125;

function version(): string {
  return (JSON.parse(fs.readFileSync(path.join(packageRoot, "package.json"), "utf8")) as { version: string }).version;
}

function* commands(cmd: Command): Generator<Command> {
  yield cmd;
  for (const sub of cmd.commands) yield* commands(sub);
}

function fullName(cmd: Command): string {
  return cmd.parent ? `${fullName(cmd.parent)} ${cmd.name()}` : cmd.name();
}

export function program(setStatus: SetStatus): Command {
  const krunbox = new Command("krunbox")
    .description("Run commands in hardware-isolated microVMs")
    .version(version(), "-V, --version")
    // Subcommands created below inherit these settings.
    .exitOverride()
    .enablePositionalOptions()
    .configureOutput({ outputError: (text, write) => write(`krunbox: ${text.replace(/^error: /, "")}`) });
  runCommand(krunbox, setStatus);
  imageCommand(krunbox);
  volumeCommand(krunbox);
  krunbox
    .command("doctor")
    .description("check this host: KVM, the backends, the kernel, the images; say what to do about what is missing")
    .option("--boot", "also boot a sandbox, run a command in it and report the time and the accelerator")
    .action(async (flags: { boot?: boolean }) => setStatus(await doctor(flags)));
  mcpCommand(krunbox, setStatus);
  for (const cmd of commands(krunbox))
    cmd.showHelpAfterError(`usage: ${fullName(cmd)} ${cmd.usage()}\n(see '${fullName(cmd)} --help')`);
  return krunbox;
}

export async function main(argv: string[]): Promise<number> {
  let status = 0;
  try {
    await program((s) => (status = s)).parseAsync(argv, { from: "user" });
    return status;
  } catch (err) {
    // Help and --version end parsing with status 0; every other
    // CommanderError is a usage error that commander has already printed.
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : USAGE_STATUS;
    if (err instanceof KrunboxError) {
      console.error(`krunbox: ${err.message}`);
      return USAGE_STATUS;
    }
    throw err;
  }
}
