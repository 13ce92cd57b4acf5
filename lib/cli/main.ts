// krunbox CLI: `krunbox run [opts] -- CMD ARGS...` and `krunbox doctor`.
import fs from "node:fs";
import os from "node:os";
import { parseArgs } from "node:util";
import { ConfigError, ImageNotFoundError, KrunboxError } from "../errors.js";
import { listImages, pruneImages, pullImage, removeImage, type PullProgress } from "../images/cache.js";
import { loadNative } from "../vm/native.js";
import { Sandbox } from "../sandbox/sandbox.js";
import { Volume, type VolumeSpec } from "../volumes/volumes.js";
import { accelCachePath, addonPath, defaultImage, qemuPrograms, runtimePaths } from "../vm/runtime.js";
import { execFileSync } from "node:child_process";

const usage = `usage:
  krunbox run [--image REF] [--cpus N] [--memory MiB] [-e KEY=VALUE]... [-w DIR] [-u USER]
              [-v SRC:DST[:ro]]... [--tmpfs DST[:MiB]]... -- CMD [ARGS...]
  krunbox image pull [--always] [--insecure] REF...
  krunbox image ls
  krunbox image rm REF...
  krunbox image prune
  krunbox volume create NAME [--quota MiB] [--label KEY=VALUE]...
  krunbox volume ls
  krunbox volume inspect NAME
  krunbox volume rm [--force] NAME...
  krunbox doctor`;

function keyValues(list: string[] | undefined, flag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kv of list ?? []) {
    const eq = kv.indexOf("=");
    if (eq <= 0) throw new ConfigError(flag, `${flag} ${kv}: expected KEY=VALUE`);
    out[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  return out;
}

async function run(argv: string[]): Promise<number> {
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

function firstLine(program: string, ...args: string[]): string {
  try {
    return execFileSync(program, args, { encoding: "utf8", timeout: 5000, stdio: ["ignore", "pipe", "pipe"] }).split("\n")[0].trim();
  } catch {
    return "version unknown";
  }
}

function doctor(): number {
  let ok = true;
  // A failed check means no sandbox can start; a warning only costs speed or a feature.
  class Warning extends Error {}
  const check = (name: string, probe: () => string) => {
    try {
      console.log(`ok    ${name}: ${probe()}`);
    } catch (err) {
      if (err instanceof Warning) {
        console.log(`WARN  ${name}: ${err.message}`);
        return;
      }
      ok = false;
      console.log(`FAIL  ${name}: ${(err as Error).message}`);
    }
  };
  check("kvm", () => {
    try {
      fs.accessSync("/dev/kvm", fs.constants.R_OK | fs.constants.W_OK);
    } catch (err) {
      const why = (err as NodeJS.ErrnoException).code === "ENOENT" ? "/dev/kvm does not exist" : "/dev/kvm is not accessible to you";
      throw new Warning(
        `${why}, so QEMU runs guests under TCG (software emulation: boots take seconds, programs run several times slower). ` +
          "For KVM: enable virtualization in the firmware (or nested virtualization in a VM), load kvm_intel or kvm_amd, " +
          "and add yourself to the kvm group (sudo usermod -aG kvm $USER, then log in again)",
      );
    }
    const pvm = fs.existsSync("/sys/module/kvm_pvm");
    const cached = fs.existsSync(accelCachePath()) ? fs.readFileSync(accelCachePath(), "utf8").trim() : "";
    if (pvm || cached === "tcg")
      throw new Warning("/dev/kvm is usable but cannot run stock guest kernels here" + (pvm ? " (PVM host)" : "") + "; QEMU uses TCG (software emulation)");
    return "/dev/kvm is usable";
  });
  check("qemu backend", () => {
    const p = qemuPrograms();
    return [
      `${p.qemuPath} (${firstLine(p.qemuPath, "--version")})`,
      `${p.virtiofsdPath} (${firstLine(p.virtiofsdPath, "--version")})`,
      `${p.vsockDaemonPath} (${firstLine(p.vsockDaemonPath, "--version")})`,
    ].join(", ");
  });
  check("addon", () => `${addonPath()} (krunbox ${loadNative().version})`);
  check("runner", () => {
    const { runner } = runtimePaths();
    return `${runner} (${firstLine(runner, "--version")})`;
  });
  check("guest", () => {
    const p = runtimePaths();
    const v = JSON.parse(fs.readFileSync(`${p.dir}/versions.json`, "utf8"));
    return `kernel ${v.kernel.release} at ${p.kernel}, agent ${v.krunbox} in ${p.initrd}`;
  });
  check("default image", () => {
    const dir = defaultImage();
    if (!fs.existsSync(`${dir}/bin/busybox`)) throw new Error(`${dir} has no busybox: remove it and retry`);
    return dir;
  });
  check("libkrun backend", () => {
    const candidates = [process.env.KRUNBOX_LIBKRUN, "/usr/lib64/libkrun.so.1", "/usr/lib/x86_64-linux-gnu/libkrun.so.1", "/usr/lib/libkrun.so.1", "/usr/local/lib/libkrun.so.1"];
    const found = candidates.find((f) => f && fs.existsSync(f));
    if (!found) return "not installed (optional; the qemu backend is used). Fedora: dnf install libkrun";
    return found;
  });
  console.log(`host: ${os.release()}, ${os.cpus().length} cores`);
  return ok ? 0 : 1;
}

async function volume(argv: string[]): Promise<number> {
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

// A bar per layer on a terminal, redrawn in place; silent otherwise.
function progressBar(ref: string): ((p: PullProgress) => void) | undefined {
  if (!process.stderr.isTTY) return undefined;
  const bars = new Map<string, string>();
  let drawn = 0;
  return (p) => {
    if (p.index < 0) return; // the image config
    const width = 30;
    const filled = p.bytesTotal ? Math.min(width, Math.round((p.bytesDone / p.bytesTotal) * width)) : width;
    const mib = (n: number) => (n / 1048576).toFixed(1);
    bars.set(p.layer, `${p.layer.slice(7, 19)} [${"#".repeat(filled)}${" ".repeat(width - filled)}] ${mib(p.bytesDone)}/${mib(p.bytesTotal)} MiB`);
    const lines = [`pulling ${ref} (${p.count} layers)`, ...bars.values()];
    process.stderr.write((drawn ? `\x1b[${drawn}A` : "") + lines.map((l) => `${l}\x1b[K\n`).join(""));
    drawn = lines.length;
  };
}

async function image(argv: string[]): Promise<number> {
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

export async function main(argv: string[]): Promise<number> {
  try {
    if (argv[0] === "run") return await run(argv.slice(1));
    if (argv[0] === "volume") return await volume(argv.slice(1));
    if (argv[0] === "image") return await image(argv.slice(1));
    if (argv[0] === "doctor") return doctor();
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
