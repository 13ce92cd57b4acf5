// The guest's serial console, copied from QEMU through a FIFO into the
// console file, up to a size limit: the guest decides how much it prints,
// not how much of the host's disk that takes, nor of the runner's CPU:
// past the limit the FIFO is no longer polled (QEMU writes it a few bytes
// at a time, one wakeup each) but emptied every kCappedDrainMs.
#pragma once

#include <poll.h>

#include <string>
#include <vector>

#include "runner/util.h"

namespace krunbox {

class ConsoleSink {
 public:
  // Creates <fifoBase>.in/.out (QEMU's "pipe" chardev) and truncates filePath.
  ConsoleSink(const std::string& fifoBase, const std::string& filePath, size_t limit);
  ~ConsoleSink();
  void AddPollFds(std::vector<pollfd>& fds) const;
  // When Handle() next wants to run without a poll event (-1: never).
  int64_t NextDrainAt() const { return truncated_ ? nextDrain_ : -1; }
  void Handle(const std::vector<pollfd>& fds);
  // Copies what QEMU wrote before it exited.
  void Drain();

 private:
  void Copy();
  std::string base_;
  Fd out_, in_, file_;
  size_t limit_, written_ = 0;
  bool truncated_ = false;
  int64_t nextDrain_ = -1;
};

}  // namespace krunbox
