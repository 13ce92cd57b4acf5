// What the CLI's commands share: typed option parsers, and turning API
// errors that name option fields into errors that name the flags.
import { InvalidArgumentError } from "commander";
import { ConfigError, SandboxConfigError } from "../errors.js";

/** A commander option parser: a whole number (range checks are the API's). */
export function wholeNumber(value: string): number {
  if (!/^-?\d+$/.test(value)) throw new InvalidArgumentError("expected a whole number");
  return Number(value);
}

/** A commander option parser for repeatable flags: collects every value. */
export function repeatable<T = string>(parse: (value: string) => T = (v) => v as T) {
  return (value: string, previous: T[] = []): T[] => [...previous, parse(value)];
}

/** KEY=VALUE; `env` supplies the value of a bare KEY (as `docker run -e KEY` does). */
export function keyValue(env?: NodeJS.ProcessEnv) {
  return (value: string): [string, string] => {
    const eq = value.indexOf("=");
    if (eq === 0) throw new InvalidArgumentError("expected KEY=VALUE");
    if (eq > 0) return [value.slice(0, eq), value.slice(eq + 1)];
    if (env?.[value] === undefined) throw new InvalidArgumentError(env ? "expected KEY=VALUE, or the name of a variable set here" : "expected KEY=VALUE");
    return [value, env[value]!];
  };
}

/**
 * The same error for a user at a shell: a ConfigError or SandboxConfigError
 * that names an API field ("memoryMiB", "volumes[2].source") is said again
 * in terms of the flag that set it ("--memory -5"). `flagFor` maps a field
 * to the flag and its value, or undefined to keep the field's name.
 */
export function inFlagTerms(err: unknown, flagFor: (field: string) => string | undefined): unknown {
  if (!(err instanceof ConfigError || err instanceof SandboxConfigError)) return err;
  const flag = flagFor(err.field);
  if (!flag) return err;
  // The message starts with the field ("network.hosts: ..." for "network.hosts.x" too): the flag replaces it.
  const named = /^([^\s:]+): /.exec(err.message);
  const detail = named && err.field.startsWith(named[1]) ? err.message.slice(named[0].length) : err.message;
  return new ConfigError(flag, `${flag}: ${detail}`);
}
