// krunbox run [opts] -- CMD ARGS...: one sandbox, one command, its status.
import { parseArgs } from "node:util";
import { ConfigError } from "../errors.js";
import { pullImage } from "../images/cache.js";
import type { NetworkOption } from "../network/policy.js";
import { Sandbox } from "../sandbox/sandbox.js";
import type { VolumeSpec } from "../volumes/spec.js";
import { keyValues, usage } from "./args.js";
import { progressBar } from "./progress.js";

export async function run(argv: string[]): Promise<number> {
  const dash = argv.indexOf("--");
  const { values, positionals } = parseArgs({
    args: dash >= 0 ? argv.slice(0, dash) : argv,
    options: {
      cpus: { type: "string" },
      memory: { type: "string" },
      env: { type: "string", short: "e", multiple: true },
      workdir: { type: "string", short: "w" },
      user: { type: "string", short: "u" },
      volume: { type: "string", short: "v", multiple: true },
      tmpfs: { type: "string", multiple: true },
      image: { type: "string" },
      network: { type: "string" },
      allow: { type: "string", multiple: true },
      "add-host": { type: "string", multiple: true },
      publish: { type: "string", short: "p", multiple: true },
    },
    allowPositionals: true,
  });
  let command = dash >= 0 ? argv.slice(dash + 1) : positionals;
  // As with Docker, an image's Entrypoint and Cmd run when no command is given.
  const pulled = values.image ? await pullImage(values.image, { onProgress: progressBar(values.image) }) : undefined;
  if (command.length === 0 && pulled) command = [...pulled.config.entrypoint, ...pulled.config.cmd];
  else if (pulled && pulled.config.entrypoint.length) command = [...pulled.config.entrypoint, ...command];
  if (command.length === 0) {
    console.error(usage);
    return 2;
  }
  const env = keyValues(values.env, "-e");
  const tmpfs: VolumeSpec[] = (values.tmpfs ?? []).map((t) => {
    const [target, size] = t.split(":");
    return { type: "tmpfs", target, sizeMiB: size === undefined ? undefined : Number(size) };
  });
  const sb = await Sandbox.create({
    image: values.image,
    volumes: [...(values.volume ?? []), ...tmpfs],
    cpus: values.cpus === undefined ? undefined : Number(values.cpus),
    memoryMiB: values.memory === undefined ? undefined : Number(values.memory),
    env,
    workdir: values.workdir,
    network: networkOption(values.network, values.allow ?? [], values["add-host"] ?? []),
    ports: values.publish,
  });
  try {
    const proc = sb.spawn(command[0], command.slice(1), { stdin: "pipe", user: values.user });
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

// --network public|none, --allow HOST, --add-host NAME:IP: the `network` option.
function networkOption(mode: string | undefined, allow: string[], addHosts: string[]): NetworkOption {
  if (mode !== undefined && mode !== "public" && mode !== "none")
    throw new ConfigError("--network", `--network ${mode}: expected "public" or "none" (or --allow HOST for a policy)`);
  const hosts: Record<string, string[]> = {};
  for (const entry of addHosts) {
    const colon = entry.indexOf(":");
    if (colon <= 0) throw new ConfigError("--add-host", `--add-host ${entry}: expected NAME:IP`);
    (hosts[entry.slice(0, colon)] ??= []).push(entry.slice(colon + 1));
  }
  if (mode === "public") return { allow: ["*", ...allow], hosts };
  if (allow.length === 0) return "none";
  if (mode === "none") throw new ConfigError("--allow", "--allow gives the sandbox a network; drop --network none");
  return { allow, hosts };
}
