// Control lines from the addon on fd 4, each bounded:
//   "stop <graceMs>"          power off (grace 0: kill the VM now)
//   "verdict <id> <1|0>"      the host program's onConnect answer to a
//                             "connect-request" event
//   "attach <id> <json>"      mount a share ({hostPath, guestPath, readOnly})
//                             or a tmpfs ({tmpfs: {guestPath, sizeMiB}}) in the
//                             running guest; answered by an "attached" event
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace krunbox {

struct AddonCommand {
  enum class Kind { Stop, Verdict, Attach };
  Kind kind = Kind::Stop;
  int64_t graceMs = 0;
  uint64_t id = 0;
  bool allowed = false;
  std::string spec;  // Attach: the JSON, parsed by the backend
};

// nullopt for a line that is none of the above.
std::optional<AddonCommand> ParseAddonLine(const std::string& line);

class AddonControl {
 public:
  explicit AddonControl(int fd) : fd_(fd) {}
  int fd() const { return fd_; }
  // Reads what is there into `out`; false once the addon went away (which
  // means "stop 0": nobody is left to stop the VM otherwise).
  bool Read(std::vector<AddonCommand>& out);

 private:
  int fd_;
  std::string buf_;
};

}  // namespace krunbox
