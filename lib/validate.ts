// Option parsing shared by every capability: zod schemas in, ConfigError
// out, naming the field ("volumes[0].readOnly") and, for a misspelt key,
// the one that was meant. Strict schemas refuse unknown keys, so a typo can
// never silently drop a setting (a read-only flag, say).
import { z } from "zod";
import { ConfigError } from "./errors.js";

/** "volumes", 0, "target" -> "volumes[0].target"; an empty key reads [""]. */
export function fieldName(prefix: string, path: readonly (string | number)[]): string {
  let out = prefix;
  for (const part of path)
    out += typeof part === "number" ? `[${part}]` : part === "" ? '[""]' : out ? `.${part}` : part;
  return out;
}

/** Parses with `schema`; throws ConfigError naming the first bad field. */
export function parseOptions<S extends z.ZodTypeAny>(schema: S, value: unknown, prefix: string): z.output<S> {
  const result = schema.safeParse(value ?? {});
  if (result.success) return result.data;
  const issue = deepestIssue(result.error.issues[0]);
  if (issue.code === "unrecognized_keys") {
    const key = issue.keys[0];
    const field = fieldName(prefix, [...issue.path, key]);
    const meant = nearMiss(key, knownKeys(schema, issue.path, value));
    throw new ConfigError(field, `${field}: unknown option${meant ? `; did you mean "${meant}"?` : ""}`);
  }
  const field = fieldName(prefix, issue.path) || prefix || "options";
  throw new ConfigError(field, `${field}: ${issue.message}`);
}

// A union that matched no branch: report the branch that got past the
// type check (an object with a bad field), not "Invalid input".
// The branch with the fewest complaints is the one the caller meant.
function deepestIssue(issue: z.ZodIssue): z.ZodIssue {
  if (issue.code !== "invalid_union") return issue;
  const typed = issue.unionErrors
    .map((e) => e.issues)
    .filter((issues) => issues.length && !(issues[0].code === "invalid_type" && issues[0].path.length === issue.path.length))
    .sort((a, b) => a.length - b.length);
  return typed.length ? deepestIssue(typed[0][0]) : issue;
}

// The keys the object schema at `path` knows, following `value` through
// arrays, records, optionals, defaults, refinements and unions.
function knownKeys(schema: z.ZodTypeAny, path: readonly (string | number)[], value: unknown): string[] {
  let s: z.ZodTypeAny | undefined = schema;
  let v = value;
  for (let i = 0; s; i++) {
    s = unwrap(s, v);
    if (i === path.length) return s instanceof z.ZodObject ? Object.keys(s.shape as object) : [];
    const key = path[i];
    if (s instanceof z.ZodObject) s = (s.shape as Record<string, z.ZodTypeAny>)[key];
    else if (s instanceof z.ZodArray) s = s.element;
    else if (s instanceof z.ZodRecord) s = s.valueSchema;
    else return [];
    v = v && typeof v === "object" ? (v as Record<string | number, unknown>)[key] : undefined;
  }
  return [];
}

function unwrap(schema: z.ZodTypeAny, value: unknown): z.ZodTypeAny | undefined {
  let s: z.ZodTypeAny | undefined = schema;
  for (;;) {
    if (s instanceof z.ZodOptional || s instanceof z.ZodNullable) s = s.unwrap();
    else if (s instanceof z.ZodDefault) s = s.removeDefault();
    else if (s instanceof z.ZodEffects) s = s.innerType();
    else if (s instanceof z.ZodDiscriminatedUnion) {
      const tag = value && typeof value === "object" ? (value as Record<string, unknown>)[s.discriminator] : undefined;
      s = s.optionsMap.get(tag as z.Primitive);
    } else if (s instanceof z.ZodUnion) {
      // The object branch that shares the most keys with the value.
      const given = value && typeof value === "object" ? Object.keys(value) : [];
      const shared = (o: z.ZodTypeAny | undefined) =>
        o instanceof z.ZodObject ? given.filter((k) => k in (o.shape as object)).length : -1;
      const branches = (s.options as z.ZodTypeAny[]).map((o) => unwrap(o, value));
      s = branches.reduce((a, b) => (shared(b) > shared(a) ? b : a), undefined as z.ZodTypeAny | undefined);
    } else return s;
  }
}

/** The known name `key` most likely meant: same letters in another case, or one or two typos away. */
export function nearMiss(key: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const k of known) {
    const d = editDistance(key.toLowerCase(), k.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [k, d];
  }
  return bestDistance <= Math.min(2, Math.floor(key.length / 3)) ? best : undefined;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) row[j] = Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = row;
  }
  return prev[b.length];
}
