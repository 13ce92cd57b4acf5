// vsock sockets for the agent, and the small vsock tool it doubles as.
#pragma once

#include <cstdint>
#include <string>

namespace agent {

int VsockConnect(uint32_t port);  // to the host (CID 2); -1 on failure
int VsockListen(uint32_t port, int backlog = 16);  // throws SetupError

// krunbox-agent vsock-connect|vsock-listen|vsock-echo PORT
int VsockTool(const std::string& mode, uint32_t port);

}  // namespace agent
