import type { PullProgress } from "../images/cache.js";

// A bar per layer on a terminal, redrawn in place; silent otherwise.
export function progressBar(ref: string): ((p: PullProgress) => void) | undefined {
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
