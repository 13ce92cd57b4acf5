// vsock ports of the guest agent, reserved in every VM: the agent dials the
// runner on kControlPort as soon as the guest is up (control.h has the line
// protocol), serves execs on kExecPort (exec_protocol.h), file operations
// on kFsPort (fs_protocol.h) and connections to guest TCP ports on
// kForwardPort (agent/forward.h).
#pragma once

#include <cstdint>

namespace krunbox {

constexpr uint32_t kControlPort = 1024;
constexpr uint32_t kExecPort = 1025;
constexpr uint32_t kFsPort = 1026;
constexpr uint32_t kForwardPort = 1027;

}  // namespace krunbox
