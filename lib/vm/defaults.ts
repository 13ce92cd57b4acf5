// Every default of a VM, in one place: the addon and the runner require
// each value, and the option schemas and docs take theirs from here.
export const VM_DEFAULTS = {
  cpus: 1,
  memoryMiB: 512,
  bootTimeoutMs: 60_000,
  workdir: "/",
  /** Console output kept per VM; the rest is dropped. */
  consoleLimitBytes: 16 << 20,
  /** Size of a tmpfs volume given without one. */
  tmpfsSizeMiB: 64,
} as const;
