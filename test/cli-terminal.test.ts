// `krunbox run -it` in a real terminal: tmux runs the CLI in a pane, types
// into it (send-keys) and reads the screen (capture-pane).
import { spawnSync } from "node:child_process";
import path from "node:path";
import { afterEach, expect, it } from "vitest";
import { tempDir, waitFor } from "./helpers.js";

const cli = path.join(import.meta.dirname, "../bin/krunbox.js");
let server: string | undefined;

// A tmux server of this test's own, on a socket in a temp folder.
function tmux(...args: string[]): string {
  const r = spawnSync("tmux", ["-S", server!, ...args], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`tmux ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
}
const screen = () => tmux("capture-pane", "-p", "-J", "-S", "-200").replace(/\n+$/, "");
const until = (what: string, pattern: RegExp) => waitFor(`${what} (screen: ${screen()})`, () => pattern.test(screen()), 120_000);

// Runs `krunbox ARGS` in a pane of cols x rows; when it ends the pane shows
// its status and whether the terminal is back in cooked mode with echo.
function start(args: string, cols = 90, rows = 25): void {
  server = path.join(tempDir(), "tmux.sock");
  const after = `echo "exit=$?"; stty -a | grep -q -- "-icanon" && echo raw-left || echo cooked; sleep 600`;
  tmux("-f", "/dev/null", "new-session", "-d", "-x", String(cols), "-y", String(rows), `${process.execPath} ${cli} ${args}; ${after}`);
  tmux("set-option", "-g", "status", "off");
}
const keys = (...k: string[]) => tmux("send-keys", ...k);

afterEach(() => {
  if (server) spawnSync("tmux", ["-S", server, "kill-server"]);
  server = undefined;
});

it("run -it is an interactive shell: terminal size and resize, ^C to the foreground job, status passed through, terminal restored", async () => {
  start("run -it -- sh");
  await until("the guest's prompt", /\/ # $/m);
  const [width, height] = tmux("display-message", "-p", "#{pane_width} #{pane_height}").trim().split(" ");
  keys("stty size; tty", "Enter");
  await until("the guest's terminal size", new RegExp(`^${height} ${width}\\n/dev/pts/\\d+`, "m"));

  tmux("resize-window", "-x", "110", "-y", "30");
  keys("stty size", "Enter");
  await until("the new size", /^30 110$/m);

  keys("echo sleeping; sleep 1000", "Enter");
  await until("the sleep", /^sleeping$/m);
  keys("C-c");
  keys("echo status=$?", "Enter");
  await until("the interrupted sleep's status", /^status=130$/m);

  keys("exit 5", "Enter");
  await until("the CLI's status", /^exit=5$/m);
  expect(screen()).toMatch(/^cooked$/m);
});

it("run -i forwards a terminal's stdin without a tty; ^D ends it", async () => {
  start("run -i -- sh -c 'cat; echo cat-done; [ -t 0 ] || echo no-tty'");
  // Cooked mode on the host: the terminal echoes the line and hands it over
  // at Enter (holding it until the CLI reads), then cat echoes it back.
  keys("hello", "Enter");
  await until("the line echoed back by cat", /^hello\nhello$/m);
  keys("C-d");
  await until("cat to see the end of its input", /^cat-done\nno-tty\nexit=0\ncooked$/m);
});

it("run -it restores the terminal when the command cannot start", async () => {
  start("run -it -- /no/such/program");
  await until("the CLI's status", /^exit=127$/m);
  expect(screen()).toMatch(/krunbox: "\/no\/such\/program" does not exist in the guest/);
  expect(screen()).toMatch(/^cooked$/m);
});
