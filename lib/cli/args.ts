// Parsing helpers shared by the CLI's commands.
import { ConfigError } from "../errors.js";

export const usage = `usage:
  krunbox run [--image REF] [--cpus N] [--memory MiB] [-e KEY=VALUE]... [-w DIR] [-u USER]
              [-v SRC:DST[:ro]]... [--tmpfs DST[:MiB]]... [--network public|none] [--allow HOST]...
              [--add-host NAME:IP]... [-p [IP:]HOST:GUEST]... -- CMD [ARGS...]
  krunbox image pull [--always] [--insecure] REF...
  krunbox image ls
  krunbox image rm REF...
  krunbox image prune
  krunbox volume create NAME [--quota MiB] [--label KEY=VALUE]...
  krunbox volume ls
  krunbox volume inspect NAME
  krunbox volume rm [--force] NAME...
  krunbox doctor
  krunbox mcp [--allow-bind DIR[:ro]]... [--allow-volume NAME|PREFIX*|*|none]... [--allow-registry HOST[:PORT]|*]...
              [--network none|allow-list|public] [--allow-host PATTERN]... [--allow-publish]
              [--max-sandboxes N] [--max-memory MiB] [--max-cpus N] [--idle-timeout SECONDS] [--max-output BYTES]
              [--max-file-bytes BYTES] [--max-list-entries N] [--python-image REF] [--node-image REF]`;

export function keyValues(list: string[] | undefined, flag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kv of list ?? []) {
    const eq = kv.indexOf("=");
    if (eq <= 0) throw new ConfigError(flag, `${flag} ${kv}: expected KEY=VALUE`);
    out[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  return out;
}
