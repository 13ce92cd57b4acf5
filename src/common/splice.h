// Copies bytes both ways between two connected stream sockets, with
// half-close, without blocking its owner's poll loop. Shared by the runner
// (vsock bridge, published ports) and the guest agent (port forwarding).
#pragma once

#include <poll.h>

#include <string>
#include <vector>

#include "common/posix.h"

namespace krunbox {

// vsock connections have no usable half-close (the host's vsock daemon
// ends the whole connection on one, or ignores it), so splices with a vsock
// side say how the end of one side is passed on.
struct SpliceEnds {
  // When `a` ends: shut `b` down for writing; or leave it, and end when `b` does.
  bool passEofToB = true;
  // When `b` ends: close both once its data is through (instead of shutting
  // `a` down for writing).
  bool closeWhenBEnds = false;
};

class Splice {
 public:
  Splice(Fd a, Fd b, SpliceEnds ends = {});
  void AddPollFds(std::vector<pollfd>& fds) const;
  // Moves what poll() reported; returns false once both directions ended.
  bool Pump(const std::vector<pollfd>& fds);

 private:
  struct Direction {
    int from, to;
    std::string pending;
    bool eof = false;
    bool passEof = true;
  };
  bool PumpOne(Direction& d, short fromEvents);
  Fd a_, b_;
  Direction ab_, ba_;
  bool closeWhenBEnds_;
};

}  // namespace krunbox
