// I/O helpers shared by the addon, the runner and the guest agent.
#pragma once

#include <string>

namespace krunbox {

// Writes all of `data` (retrying short writes and EINTR); false on error.
bool WriteAll(int fd, const std::string& data);

}  // namespace krunbox
