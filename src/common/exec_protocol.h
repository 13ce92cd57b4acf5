// The exec protocol between the host and the guest agent; its TypeScript
// twin is lib/sandbox/protocol.ts (keep the two in step). The host opens one
// vsock connection per process.
//
// Frames both ways: u32 little-endian length of (type + payload), u8 type,
// payload; at most kMaxFrame bytes. Protocol version 1.
//   host -> guest  EXEC {"v":1,"argv":[..],"env":[..],"cwd":"/","user":"",
//                        "timeoutMs":0}   (first frame, once); with
//                        "checkOnly":true the agent resolves user and cwd,
//                        starts nothing and answers EXIT {"code":0} or ERROR
//                  STDIN bytes | STDIN_EOF | SIGNAL u32
//   guest -> host  STARTED {"pid":n} | STDOUT bytes | STDERR bytes |
//                  EXIT {"code":n} or {"signal":n}, plus "timedOut":true |
//                  ERROR {"message":".."}, plus "field":"user"|"cwd" when
//                  that option is what the guest rejected
// Closing the connection kills the process group.
#pragma once

#include <cstdint>

namespace krunbox {

enum FrameType : uint8_t {
  kExec = 1,
  kStdin = 2,
  kStdinEof = 3,
  kSignal = 4,
  kStarted = 16,
  kStdout = 17,
  kStderr = 18,
  kExit = 19,
  kError = 20,
};
constexpr uint32_t kProtocolVersion = 1;
constexpr uint32_t kMaxFrame = 1 << 20;

}  // namespace krunbox
