// Compiled by test/types.test.ts (never run): the public types say what
// the API does. Each @ts-expect-error line must fail to compile.
import { Sandbox, Volume, type ExecResult, type SandboxState, type ConnectionEvent, type SandboxProcess } from "../../lib/index.js";

export async function typed(sb: Sandbox, vol: Volume, proc: SandboxProcess): Promise<void> {
  const text: ExecResult<string> = await sb.exec("cat", [], { input: "x", onStdout: (chunk: string) => void chunk });
  const bytes: ExecResult<Buffer> = await sb.exec("cat", [], { encoding: "buffer", onStdout: (chunk: Buffer) => void chunk });
  const shell: string = (await sb.sh("echo hi")).stdout;
  const shellBytes: Buffer = (await sb.sh("echo hi", { encoding: "buffer" })).stdout;
  const encoding = Math.random() < 0.5 ? ("utf8" as const) : ("buffer" as const);
  const either: string | Buffer = (await sb.exec("cat", [], { encoding })).stdout;
  void [text.command, text.durationMs, bytes.stdout.byteLength, shell, shellBytes, either];
  const signal: NodeJS.Signals | `SIGRTMIN+${number}` | `SIG${number}` | null = text.signal;
  void signal;
  sb.on("state", (state: SandboxState) => void state);
  sb.once("connection", (event: ConnectionEvent) => void event.allowed);
  sb.unref().ref();
  const p = sb.spawn("sh", [], { tty: { cols: 80, rows: 24 }, stdin: "pipe" });
  p.resize(100, 30);

  // @ts-expect-error a Buffer exec's output is not a string
  const notText: string = (await sb.exec("cat", [], { encoding: "buffer" })).stdout;
  // @ts-expect-error a string exec's live output is not a Buffer
  await sb.exec("cat", [], { onStdout: (chunk: Buffer) => void chunk });
  // @ts-expect-error stdin takes "pipe" or "ignore", not data
  sb.spawn("cat", [], { stdin: "hello" });
  // @ts-expect-error state is read-only
  sb.state = "running";
  // @ts-expect-error the state event carries a SandboxState
  sb.on("state", (state: number) => void state);
  // @ts-expect-error no such event
  sb.on("stat", () => {});
  // @ts-expect-error pid is read-only
  proc.pid = 1;
  // @ts-expect-error info is read-only
  vol.info = vol.info;
  // @ts-expect-error and so are its fields
  vol.info.quotaMiB = 1;
  void notText;
}
