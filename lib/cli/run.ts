// krunbox run [options] [--] CMD ARGS...: one sandbox, one command, its status.
import { InvalidArgumentError, type Command } from "commander";
import { finished } from "node:stream/promises";
import { ConfigError, ExecFailedError, VolumeNotFoundError } from "../errors.js";
import { pullImage } from "../images/cache.js";
import type { NetworkOption } from "../network/policy.js";
import { commandLine } from "../sandbox/exec.js";
import { signalNumber } from "../sandbox/process.js";
import { checkSandboxOptions, Sandbox } from "../sandbox/sandbox.js";
import type { ResolvedSandboxOptions, SandboxOptions } from "../sandbox/options.js";
import type { VolumeSpec } from "../volumes/spec.js";
import { Volume } from "../volumes/volumes.js";
import { inFlagTerms, keyValue, repeatable, wholeNumber } from "./args.js";
import type { SetStatus } from "./main.js";
import { progressBar } from "./progress.js";

interface TmpfsFlag {
  raw: string;
  target: string;
  sizeMiB?: number;
}

interface AddHostFlag {
  raw: string;
  name: string;
  ip: string;
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
  network?: "public" | "none";
  allow?: string[];
  addHost?: AddHostFlag[];
  publish?: string[];
  interactive?: boolean;
  tty?: boolean;
}

function tmpfsFlag(raw: string): TmpfsFlag {
  const colon = raw.lastIndexOf(":");
  if (colon < 0) return { raw, target: raw };
  return { raw, target: raw.slice(0, colon), sizeMiB: wholeNumber(raw.slice(colon + 1)) };
}

function networkFlag(value: string): "public" | "none" {
  if (value !== "public" && value !== "none") throw new InvalidArgumentError('expected "public" or "none" (or --allow HOST for a policy)');
  return value;
}

function addHostFlag(raw: string): AddHostFlag {
  const colon = raw.indexOf(":");
  if (colon <= 0) throw new InvalidArgumentError("expected NAME:IP");
  return { raw, name: raw.slice(0, colon), ip: raw.slice(colon + 1) };
}

const shellWord = (value: string) => commandLine([value]);

// --network public|none, --allow HOST, --add-host NAME:IP: the `network` option.
// With --network public, "*" comes after the --allow entries, so that
// network.allow[i] is the i-th --allow in errors.
function networkOption(flags: RunFlags): NetworkOption {
  const allow = flags.allow ?? [];
  const hosts: Record<string, string[]> = {};
  for (const { name, ip } of flags.addHost ?? []) (hosts[name] ??= []).push(ip);
  if (flags.network === "public") return { allow: [...allow, "*"], hosts };
  if (allow.length === 0) return "none";
  if (flags.network === "none") throw new ConfigError("--allow", "--allow gives the sandbox a network; drop --network none");
  return { allow, hosts };
}

// Each run flag: the SandboxOptions it sets (and `flagFor` maps back).
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
    network: networkOption(flags),
    ports: flags.publish,
  };
}

/** The flag (and value) that set an option field, to speak the user's language in errors. */
function flagFor(flags: RunFlags): (field: string) => string | undefined {
  const flag = (name: string, value: string | number | undefined) => (value === undefined ? undefined : `${name} ${shellWord(String(value))}`);
  const volumeFlags = [...(flags.volume ?? []).map((v) => flag("-v", v)), ...(flags.tmpfs ?? []).map((t) => flag("--tmpfs", t.raw))];
  const byField: Record<string, string | undefined> = {
    image: flag("--image", flags.image),
    cpus: flag("--cpus", flags.cpus),
    memoryMiB: flag("--memory", flags.memory),
    workdir: flag("-w", flags.workdir),
    user: flag("-u", flags.user),
    network: flag("--network", flags.network),
  };
  return (field) => {
    const indexed = /^(volumes|ports|network\.allow)\[(\d+)\]/.exec(field);
    if (indexed) {
      const i = Number(indexed[2]);
      if (indexed[1] === "volumes") return volumeFlags[i];
      return indexed[1] === "ports" ? flag("-p", flags.publish?.[i]) : flag("--allow", flags.allow?.[i]);
    }
    const host = /^network\.hosts\.(.+)$/.exec(field);
    if (host) return flag("--add-host", flags.addHost?.find((h) => h.name === host[1])?.raw);
    const top = field.split(".")[0];
    if (top === "env") return "-e";
    return byField[top];
  };
}

// Docker's rule (a -v source without "/" or "." first names a volume) is
// easy to trip over: say so when it makes a volume. `volumes` are the
// parsed entries, -v flags first, in order.
async function namedVolumesToCreate(options: ResolvedSandboxOptions, flags: RunFlags): Promise<{ flag: string; name: string }[]> {
  const missing = [];
  for (const [i, v] of options.volumes.entries()) {
    if (v.type !== "named") continue;
    try {
      await Volume.get(v.name);
    } catch (err) {
      if (!(err instanceof VolumeNotFoundError)) throw err;
      missing.push({ flag: `-v ${shellWord(flags.volume![i])}`, name: v.name });
    }
  }
  return missing;
}

async function run(argv: string[], flags: RunFlags, cmd: Command): Promise<number> {
  const options = sandboxOptions(flags);
  const checked = checkSandboxOptions(options);
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

  const created = await namedVolumesToCreate(checked, flags);
  const sb = await Sandbox.create(options);
  for (const { flag, name } of created)
    console.error(`krunbox: ${flag}: created the named volume "${name}" (a source without "/" or "." first names a volume; write ./${name} to bind a folder)`);
  try {
    return await attach(sb, command, flags);
  } finally {
    await sb.stop();
  }
}

// The command on this process's stdio: stdin forwarded with -i or when it
// is not a terminal, a terminal of this one's size with -t (raw mode while
// it runs, with -i), signals passed on, its status returned.
async function attach(sb: Sandbox, command: string[], flags: RunFlags): Promise<number> {
  const { stdin, stdout } = process;
  const forward = flags.interactive === true || !stdin.isTTY;
  const tty = flags.tty ? { cols: stdout.columns || 80, rows: stdout.rows || 24 } : undefined;
  const proc = sb.spawn(command[0], command.slice(1), { stdin: forward ? "pipe" : "ignore", tty });
  const raw = forward && tty !== undefined && stdin.isTTY;
  const restore = () => raw && stdin.setRawMode(false);
  const resize = () => proc.resize(stdout.columns || 80, stdout.rows || 24);
  const forwardSignal = (sig: NodeJS.Signals) => proc.kill(sig);
  try {
    if (raw) {
      stdin.setRawMode(true);
      process.once("exit", restore); // whatever happens next
    }
    if (tty && stdout.isTTY) stdout.on("resize", resize);
    for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(sig, forwardSignal);
    proc.stdout.pipe(stdout);
    proc.stderr.pipe(process.stderr);
    if (forward) stdin.pipe(proc.stdin!);
    const exit = await proc.exited;
    await Promise.all([finished(proc.stdout), finished(proc.stderr)]);
    return exit.exitCode ?? 128 + signalNumber(exit.signal!);
  } catch (err) {
    // As a shell says it: 127 for a program that is not there, 126 for one that cannot run.
    if (!(err instanceof ExecFailedError && err.field === "command")) throw err;
    console.error(`krunbox: ${err.message}`);
    return err.errno === "ENOENT" ? 127 : 126;
  } finally {
    restore();
    process.off("exit", restore);
    stdout.off("resize", resize);
    for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.off(sig, forwardSignal);
    if (forward) {
      stdin.unpipe();
      stdin.destroy();
    }
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
    .option("--network <mode>", '"none" (default: no network device) or "public" (the internet, no private or host addresses)', networkFlag)
    .option("--allow <host>", 'allow a destination: name, *.suffix, IP, prefix, with ":PORT" (repeatable; gives the sandbox a network)', repeatable())
    .option("--add-host <name:ip>", "resolve NAME to IP on the host side, like /etc/hosts (repeatable)", repeatable(addHostFlag))
    .option("-p, --publish <[ip:]host:guest>", "publish a guest TCP port on the host (127.0.0.1 unless IP is given; repeatable)", repeatable())
    .option("-i, --interactive", "forward stdin even when it is a terminal (it always is when it is not)")
    .option("-t, --tty", "give the command a terminal of this one's size (-it: an interactive shell, in raw mode)")
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
  krunbox run -it -- sh
  krunbox run -e NAME=guest -w /tmp sh -c 'echo hello $NAME from $(pwd)'
  krunbox run -v "$PWD:/src:ro" --tmpfs /scratch:64 --memory 1024 ls /src
  krunbox run --allow api.test:8080 --add-host api.test:127.0.0.1 -- wget -qO- http://api.test:8080/
  krunbox run -p 8080:8000 -- httpd -f -p 8000`,
    )
    .action(async (command: string[], flags: RunFlags, cmd: Command) => {
      try {
        setStatus(await run(command, flags, cmd));
      } catch (err) {
        throw inFlagTerms(err, flagFor(flags));
      }
    });
}
