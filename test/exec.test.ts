// The exec API on a real VM: input and stdin, the shell form, live output,
// what results carry, and processes with a terminal.
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError, ExecFailedError, Sandbox } from "../lib/index.js";
import { waitFor } from "./helpers.js";

let sb: Sandbox;
beforeAll(async () => {
  sb = await Sandbox.create();
});
afterAll(async () => {
  await sb.stop();
});

describe("input and stdin", () => {
  it("takes data in input: a string, bytes or a Readable", async () => {
    expect((await sb.exec("cat", [], { input: "text\n" })).stdout).toBe("text\n");
    expect((await sb.exec("wc", ["-c"], { input: new Uint8Array([1, 2, 3]) })).stdout.trim()).toBe("3");
    const r = await sb.exec("cat", [], { input: Readable.from(["one\n", "two\n"]) });
    expect(r.stdout).toBe("one\ntwo\n");
    const p = sb.spawn("cat", [], { input: "spawned\n" });
    let out = "";
    p.stdout.on("data", (d) => (out += d));
    await p.exited;
    expect(out).toBe("spawned\n");
  });

  it('takes only "pipe" or "ignore" in stdin, and exec refuses "pipe"', async () => {
    for (const stdin of ["inherit", "hello", Buffer.from("x")])
      await expect(sb.exec("cat", [], { stdin: stdin as never })).rejects.toMatchObject({ field: "options.stdin" });
    const pipe = await sb.exec("cat", [], { stdin: "pipe" }).catch((e) => e);
    expect(pipe).toBeInstanceOf(ConfigError);
    expect(pipe.message).toMatch(/options\.stdin: exec has no stream to write to: pass the data in "input"/);
    expect(() => sb.spawn("cat", [], { stdin: "pipe", input: "x" })).toThrow(/options\.input/);
    expect((await sb.exec("cat", [], { stdin: "ignore" })).stdout).toBe("");
  });

  it("ends the process when its input stream fails, with that error", async () => {
    const input = new Readable({ read() {} });
    const pending = sb.exec("cat", [], { input });
    input.push("partial\n");
    setTimeout(() => input.destroy(new Error("the source broke")), 200);
    await expect(pending).rejects.toThrow("the source broke");
  });
});

describe("the shell form", () => {
  it("sb.sh runs /bin/sh -c; exec never goes through a shell", async () => {
    const r = await sb.sh("echo hi | wc -c; echo $((6 * 7)) >&2");
    expect(r).toMatchObject({ exitCode: 0, stdout: "3\n", stderr: "42\n", command: "/bin/sh -c 'echo hi | wc -c; echo $((6 * 7)) >&2'" });
    expect((await sb.sh("exit 4")).exitCode).toBe(4);
    expect((await sb.sh("printf x", { encoding: "buffer" })).stdout).toEqual(Buffer.from("x"));
    await expect(sb.exec("echo hi | wc -c")).rejects.toMatchObject({ field: "command" });
    await expect(sb.sh(undefined as never)).rejects.toMatchObject({ field: "script" });
  });
});

describe("results and live output", () => {
  it("carry the command, the duration and the signal's name", async () => {
    const r = await sb.exec("sh", ["-c", "kill -TERM $$", "it's"]);
    expect(r).toMatchObject({ exitCode: null, signal: "SIGTERM", command: `sh -c 'kill -TERM $$' 'it'\\''s'` });
    expect(r.durationMs).toBeGreaterThan(0);
    const killed = sb.spawn("sleep", ["100"]);
    await waitFor("the guest pid", () => killed.pid);
    killed.kill("SIGRTMIN+1");
    expect(await killed.exited).toMatchObject({ exitCode: null, signal: "SIGRTMIN+1" });
  });

  it("calls onStdout and onStderr as output arrives, in whole characters", async () => {
    // The process waits for a line that only the first callback sends: the
    // exec ends only if the callback ran while it was still running.
    const input = new Readable({ read() {} });
    const seen: string[] = [];
    const errs: string[] = [];
    const r = await sb.exec("sh", ["-c", 'printf "h\\303"; printf "\\251llo\\n"; read line; echo "got $line"; echo oops >&2'], {
      input,
      timeoutMs: 30_000,
      onStdout: (chunk) => {
        seen.push(chunk);
        if (chunk.includes("llo")) input.push("go\n");
      },
      onStderr: (chunk) => errs.push(chunk),
    });
    expect(r.stdout).toBe("héllo\ngot go\n");
    expect(seen.join("")).toBe("héllo\ngot go\n");
    expect(seen.every((s) => !s.includes("\ufffd"))).toBe(true);
    expect(errs.join("")).toBe("oops\n");
    const bytes: Buffer[] = [];
    await sb.exec("printf", ["ab"], { encoding: "buffer", onStdout: (b) => bytes.push(b) });
    expect(Buffer.concat(bytes)).toEqual(Buffer.from("ab"));
  });

  it("ends the exec with the error a callback throws, and kills the process", async () => {
    const err = await sb
      .exec("sh", ["-c", "echo $$ > /tmp/cb; echo x; sleep 100"], {
        onStdout: () => {
          throw new Error("stop here");
        },
      })
      .catch((e) => e);
    expect(err.message).toBe("stop here");
    const check = await sb.sh("sleep 0.3; kill -0 $(cat /tmp/cb) 2>/dev/null && echo alive || echo gone");
    expect(check.stdout).toBe("gone\n");
  });
});

describe("terminals", () => {
  // 0 while a `sleep` runs in the guest, else 1.
  const sleeping = async () =>
    (await sb.sh('for f in /proc/[0-9]*/comm; do read c < "$f" 2>/dev/null && [ "$c" = sleep ] && exit 0; done; exit 1')).exitCode;
  // Output so far, and a wait for a pattern in it.
  function screen(proc: ReturnType<Sandbox["spawn"]>) {
    let text = "";
    proc.stdout.on("data", (d: Buffer) => (text += d.toString()));
    return {
      text: () => text,
      until: (pattern: RegExp) => waitFor(`${pattern} in ${JSON.stringify(text)}`, () => pattern.test(text), 30_000),
    };
  }

  it("gives the process a terminal: isatty, its size, resize, stderr merged", async () => {
    const p = sb.spawn("sh", ["-c", 'for fd in 0 1 2; do [ -t $fd ] && echo "tty$fd"; done; tty; stty size; echo err >&2; read x; stty size'], {
      tty: { cols: 100, rows: 30 },
      stdin: "pipe",
    });
    const s = screen(p);
    await s.until(/30 100/);
    p.resize(120, 40);
    p.stdin!.write("\n");
    expect(await p.exited).toMatchObject({ exitCode: 0 });
    const lines = s.text().split("\r\n");
    expect(lines.slice(0, 4)).toEqual(["tty0", "tty1", "tty2", expect.stringMatching(/^\/dev\/pts\/\d+$/)]);
    expect(lines).toContain("err");
    expect(lines.at(-2)).toBe("40 120");
    expect(() => sb.spawn("true").resize(80, 24)).toThrow(ConfigError);
    expect(() => p.resize(0, 24)).toThrow(/cols/);
  });

  // An interactive shell running `sleep 1000` in the foreground.
  async function shellInSleep() {
    const p = sb.spawn("sh", ["-i"], { tty: { cols: 80, rows: 24 }, stdin: "pipe" });
    const s = screen(p);
    await s.until(/\/ # /);
    p.stdin!.write("sleep 1000\n");
    await waitFor("sleep in the guest", async () => (await sleeping()) === 0, 30_000);
    return { p, s };
  }

  it("delivers ^C typed into stdin to the foreground job; the shell survives and its status comes back", async () => {
    const { p, s } = await shellInSleep();
    p.stdin!.write("\x03");
    await s.until(/\^C/);
    p.stdin!.write("echo sleep-ended-$?\n");
    await s.until(/sleep-ended-130/);
    p.stdin!.write("echo alive; exit 7\n");
    expect(await p.exited).toMatchObject({ exitCode: 7, signal: null });
    expect(s.text()).toMatch(/\r\nalive\r\n/);
    expect(await sleeping()).toBe(1);
  });

  it("kill() signals the process's group; the terminal's foreground job hangs up with it", async () => {
    const { p } = await shellInSleep();
    p.kill("SIGKILL");
    expect(await p.exited).toMatchObject({ signal: "SIGKILL" });
    await waitFor("no sleep left", async () => (await sleeping()) === 1, 30_000);
  });

  it("runs a terminal program as a user who owns its terminal", async () => {
    const r = await sb.exec("sh", ["-c", 'stat -c "%u" $(tty); echo hi > $(tty)'], { tty: { cols: 80, rows: 24 }, user: "nobody" });
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toBe("65534\r\nhi\r\n");
  });
});

it("reuses the connection of an exec that ended for the next one, whatever the last one left unsaid", async () => {
  // Leftover stdin of an exec that ended must not reach the next one.
  const p = sb.spawn("head", ["-c", "1"], { stdin: "pipe" });
  p.stdin!.write("a");
  await p.exited;
  p.stdin!.write("leftover");
  p.stdin!.end();
  const next = await sb.exec("cat", [], { input: "" });
  expect(next.stdout).toBe("");
  const failed = await sb.exec("/nope").catch((e) => e);
  expect(failed).toBeInstanceOf(ExecFailedError);
  expect((await sb.exec("echo", ["after an error"])).stdout).toBe("after an error\n");
});
