// The exec protocol between the host and the guest agent; its TypeScript
// twin is lib/sandbox/protocol.ts (keep the two in step).
//
// The host keeps connections to the agent open and runs one process at a
// time on each: after EXIT or ERROR a connection takes the next EXEC, so an
// exec costs no connection set-up. Frames for an exec that has ended
// (STDIN, STDIN_EOF, SIGNAL, RESIZE sent before the host learned so) are
// dropped. Closing the connection kills the running process's group.
//
// Frames both ways: u32 little-endian length of (type + payload), u8 type,
// payload; at most kMaxFrame bytes. Protocol version 2.
//   host -> guest  EXEC {"v":2,"argv":[..],"env":[..],"cwd":"/","user":"",
//                        "timeoutMs":0}, plus "tty":{"cols":n,"rows":n} for
//                        a pseudo-terminal (stdin, stdout and stderr, and
//                        the controlling terminal; its output is STDOUT);
//                        with "checkOnly":true the agent resolves user and
//                        cwd, starts nothing and answers EXIT {"code":0} or
//                        ERROR
//                  STDIN bytes | STDIN_EOF (ignored with a tty) |
//                  SIGNAL u32 (to the process's group) |
//                  RESIZE u16 cols, u16 rows (a tty's size: TIOCSWINSZ)
//   guest -> host  STARTED {"pid":n} | STDOUT bytes | STDERR bytes |
//                  EXIT {"code":n} or {"signal":n}, plus "timedOut":true |
//                  ERROR {"message":".."} instead of STARTED, plus
//                  "field":"user"|"cwd"|"command" when that is what the
//                  guest rejected (command: not found, not executable) and
//                  "errno":n when a system call said why
#pragma once

#include <cstdint>

namespace krunbox {

enum FrameType : uint8_t {
  kExec = 1,
  kStdin = 2,
  kStdinEof = 3,
  kSignal = 4,
  kResize = 5,
  kStarted = 16,
  kStdout = 17,
  kStderr = 18,
  kExit = 19,
  kError = 20,
};
constexpr uint32_t kProtocolVersion = 2;
constexpr uint32_t kMaxFrame = 1 << 20;

}  // namespace krunbox
