// Copies bytes both ways between two connected stream sockets, with
// half-close, without blocking its owner's poll loop. Shared by the runner
// (vsock bridge, published ports) and the guest agent (port forwarding).
#pragma once

#include <poll.h>

#include <string>
#include <vector>

#include "common/posix.h"

namespace krunbox {

class Splice {
 public:
  // passEofToB=false: when `a` ends, `b` is not shut down for writing (a
  // vsock transport drops what the peer had not yet sent on a half-close);
  // the splice then ends when `b` does.
  Splice(Fd a, Fd b, bool passEofToB = true);
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
};

}  // namespace krunbox
