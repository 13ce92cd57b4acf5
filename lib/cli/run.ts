// krunbox run [options] [--] CMD ARGS...: one sandbox, one command, its status.
import type { Command } from "commander";
import { VolumeNotFoundError } from "../errors.js";
import { pullImage } from "../images/cache.js";
import { checkSandboxOptions, Sandbox } from "../sandbox/sandbox.js";
import type { SandboxOptions } from "../sandbox/options.js";
import { dockerStyleVolume, Volume, type VolumeSpec } from "../volumes/volumes.js";
import { inFlagTerms, keyValue, repeatable, wholeNumber } from "./args.js";
import type { SetStatus } from "./main.js";
import { progressBar } from "./progress.js";

interface TmpfsFlag {
  raw: string;
  target: string;
  sizeMiB?: number;
}

/** The parsed flags of `krunbox run`, as commander hands them over. */
export interface RunFlags {
  image?: string;
  cpus?: number;
  memory?: number;
  env?: [string, string][];
  workdir?: string;
  user?: string;
  volume?: string[];
  tmpfs?: TmpfsFlag[];
}

function tmpfsFlag(raw: string): TmpfsFlag {
  const colon = raw.lastIndexOf(":");
  if (colon < 0) return { raw, target: raw };
  return { raw, target: raw.slice(0, colon), sizeMiB: wholeNumber(raw.slice(colon + 1)) };
}

function shellWord(value: string): string {
  return /^[\w@%+=:,./-]+$/.test(value) ? value : `'${value.replaceAll("'", `'\\''`)}'`;
}

// Each run flag: the SandboxOptions it sets. Flags that other modules add
// (networking...) extend the options here and the table in `flagFor`.
function sandboxOptions(flags: RunFlags): SandboxOptions {
  const tmpfs: VolumeSpec[] = (flags.tmpfs ?? []).map(({ target, sizeMiB }) => ({ type: "tmpfs", target, sizeMiB }));
  return {
    image: flags.image,
    cpus: flags.cpus,
    memoryMiB: flags.memory,
    env: Object.fromEntries(flags.env ?? []),
    workdir: flags.workdir,
    user: flags.user,
    volumes: [...(flags.volume ?? []), ...tmpfs],
  };
}

/** The flag (and value) that set an option field, to speak the user's language in errors. */
function flagFor(flags: RunFlags): (field: string) => string | undefined {
  const volumeFlags = [...(flags.volume ?? []).map((v) => `-v ${shellWord(v)}`), ...(flags.tmpfs ?? []).map((t) => `--tmpfs ${shellWord(t.raw)}`)];
  const byField: Record<string, [string, unknown]> = {
    image: ["--image", flags.image],
    cpus: ["--cpus", flags.cpus],
    memoryMiB: ["--memory", flags.memory],
    workdir: ["-w", flags.workdir],
    user: ["-u", flags.user],
  };
  return (field) => {
    const volume = /^volumes\[(\d+)\]/.exec(field);
    if (volume) return volumeFlags[Number(volume[1])];
    const top = field.split(".")[0];
    if (top === "env") return "-e";
    const [flag, value] = byField[top] ?? [];
    return flag && value !== undefined ? `${flag} ${shellWord(String(value))}` : undefined;
  };
}

// Docker's rule (a -v source without "/" or "." first names a volume) is
// easy to trip over: say so when it makes a volume.
async function namedVolumesToCreate(volumes: string[]): Promise<{ flag: string; name: string }[]> {
  const missing = [];
  for (const [i, raw] of volumes.entries()) {
    const spec = dockerStyleVolume(raw, `volumes[${i}]`);
    if (spec.type !== "named") continue;
    try {
      await Volume.get(spec.name);
    } catch (err) {
      if (!(err instanceof VolumeNotFoundError)) throw err;
      missing.push({ flag: `-v ${shellWord(raw)}`, name: spec.name });
    }
  }
  return missing;
}

async function run(argv: string[], flags: RunFlags, cmd: Command): Promise<number> {
  const options = sandboxOptions(flags);
  checkSandboxOptions(options);
  // As with Docker, an image's Entrypoint and Cmd run when no command is given.
  const pulled = flags.image ? await pullImage(flags.image, { onProgress: progressBar(flags.image) }) : undefined;
  let command = argv;
  if (command.length === 0 && pulled) command = [...pulled.config.entrypoint, ...pulled.config.cmd];
  else if (pulled && pulled.config.entrypoint.length) command = [...pulled.config.entrypoint, ...command];
  if (command.length === 0)
    cmd.error(`run: no command given${flags.image ? ` and image ${flags.image} has no Entrypoint or Cmd` : ""}`, {
      exitCode: 125,
      code: "krunbox.noCommand",
    });

  const created = await namedVolumesToCreate(flags.volume ?? []);
  const sb = await Sandbox.create(options);
  for (const { flag, name } of created)
    console.error(`krunbox: ${flag}: created the named volume "${name}" (a source without "/" or "." first names a volume; write ./${name} to bind a folder)`);
  try {
    const proc = sb.spawn(command[0], command.slice(1), { stdin: "pipe" });
    proc.stdout.pipe(process.stdout);
    proc.stderr.pipe(process.stderr);
    if (process.stdin.isTTY) proc.stdin!.end();
    else process.stdin.pipe(proc.stdin!);
    for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(sig, () => proc.kill(sig));
    const exit = await proc.exited;
    process.stdin.unpipe();
    process.stdin.destroy();
    return exit.exitCode ?? 128 + (exit.signal ?? 0);
  } finally {
    await sb.stop();
  }
}

export function runCommand(parent: Command, setStatus: SetStatus): Command {
  return parent
    .command("run")
    .description("run a command in a new sandbox; exits with its status (128 + signal if killed, 125 for krunbox's errors)")
    .argument("[command...]", "the command and its arguments (default: the image's Entrypoint and Cmd)")
    .option("--image <ref>", "OCI image to run (pulled if missing; default: krunbox's busybox image)")
    .option("--cpus <n>", "virtual CPUs (default 1)", wholeNumber)
    .option("--memory <MiB>", "guest memory in MiB (default 512)", wholeNumber)
    .option("-e, --env <KEY=VALUE>", "set a variable; a bare KEY passes on its value here (repeatable)", repeatable(keyValue(process.env)))
    .option("-w, --workdir <dir>", "working folder in the guest (default: the image's, or /)")
    .option("-u, --user <user>", "user in the guest: a name from the image's /etc/passwd, uid or uid:gid")
    .option("-v, --volume <src:dst[:ro]>", "bind a host folder or file (src starts with / or .) or mount a named volume (repeatable)", repeatable())
    .option("--tmpfs <dst[:MiB]>", "a size-limited tmpfs (repeatable)", repeatable(tmpfsFlag))
    // Like `docker run`: options end at the command, which gets the rest.
    .passThroughOptions()
    .addHelpText(
      "after",
      `
krunbox's options come before the command; everything from the command on
is the command's, so "krunbox run ls -la" runs "ls -la". "--" before the
command is optional. A -v source that does not start with "/" or "." names
a volume, created on first use (as in Docker); write ./name for a folder.

examples:
  krunbox run -- uname -a
  krunbox run -e NAME=guest -w /tmp sh -c 'echo hello $NAME from $(pwd)'
  krunbox run -v "$PWD:/src:ro" --tmpfs /scratch:64 --memory 1024 ls /src`,
    )
    .action(async (command: string[], flags: RunFlags, cmd: Command) => {
      try {
        setStatus(await run(command, flags, cmd));
      } catch (err) {
        throw inFlagTerms(err, flagFor(flags));
      }
    });
}
