// What tool results are made of: structured content with its JSON as the
// text (as the MCP spec asks, for clients that read only text), and
// process output bounded to what fits a model's context.

export function toolResult<T extends Record<string, unknown>>(structured: T) {
  return { content: [{ type: "text" as const, text: JSON.stringify(structured, null, 1) }], structuredContent: structured };
}

/**
 * Keeps the first and the last `limit / 2` bytes of a stream (a command's
 * start and its final errors are what a reader needs) and counts the
 * bytes in between that it drops.
 */
export class BoundedOutput {
  #head: Buffer[] = [];
  #headBytes = 0;
  #tail: Buffer[] = [];
  #tailBytes = 0;
  #total = 0;
  readonly #headLimit: number;
  readonly #tailLimit: number;

  constructor(limit: number) {
    this.#tailLimit = Math.floor(limit / 2);
    this.#headLimit = limit - this.#tailLimit;
  }

  push(chunk: Buffer): void {
    this.#total += chunk.length;
    if (this.#headBytes < this.#headLimit) {
      const take = chunk.subarray(0, this.#headLimit - this.#headBytes);
      this.#head.push(take);
      this.#headBytes += take.length;
      chunk = chunk.subarray(take.length);
      if (!chunk.length) return;
    }
    this.#tail.push(chunk);
    this.#tailBytes += chunk.length;
    // Drop whole chunks that lie entirely before the last #tailLimit bytes.
    while (this.#tailBytes - this.#tail[0].length >= this.#tailLimit) this.#tailBytes -= this.#tail.shift()!.length;
  }

  /** The text kept, with a marker where bytes were dropped; `omitted` counts them. */
  result(): { text: string; total: number; omitted: number } {
    const tail = Buffer.concat(this.#tail);
    const keptTail = tail.subarray(Math.max(0, tail.length - this.#tailLimit));
    const omitted = this.#total - this.#headBytes - keptTail.length;
    const head = Buffer.concat(this.#head).toString("utf8");
    const text = omitted ? `${head}\n[... ${omitted} bytes left out ...]\n${keptTail.toString("utf8")}` : head + keptTail.toString("utf8");
    return { text, total: this.#total, omitted };
  }
}
