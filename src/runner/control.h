// The runner's end of the guest agent's control connection. The agent
// connects to host vsock port kControlPort as soon as the guest is up and
// speaks text lines (the guest is untrusted: every line is bounded):
//   guest -> host  "ready" | "exit <code>" | "signal <n>" | "error <text>"
//                  "mounted <id>" | "mount-failed <id> <text>"
//   host -> guest  "poweroff" | "mount <id> <GuestMount JSON>"
#pragma once

#include <poll.h>

#include <string>
#include <vector>

#include "runner/util.h"

namespace krunbox {

// The agent's answer to "mount <id> ..." (error empty: mounted).
struct MountReply {
  uint64_t id = 0;
  std::string error;
};

struct GuestReport {
  bool ready = false;
  bool exited = false;
  int code = 0;
  int signal = 0;
  std::string error;
  std::vector<MountReply> mounts;  // answers not yet taken by the backend
};

// Applies one line from the agent to `report`; unknown lines are ignored.
void ParseControlLine(const std::string& line, GuestReport& report);

class ControlChannel {
 public:
  explicit ControlChannel(const std::string& path);
  ~ControlChannel();
  void AddPollFds(std::vector<pollfd>& fds) const;
  void Handle(const std::vector<pollfd>& fds, GuestReport& report);
  bool RequestPowerOff();
  // One line to the agent (no newline in `line`); false without a connection.
  bool Send(const std::string& line);

 private:
  std::string path_;
  Fd listen_, conn_;
  std::string buf_;
};

}  // namespace krunbox
