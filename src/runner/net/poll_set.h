// One round of poll(): each part of the network thread adds its fds with a
// handler, and the handlers of the fds that became ready run afterwards.
// Handlers must not destroy what other handlers of the same round point
// at: parts mark themselves done and are swept after the round.
#pragma once

#include <errno.h>
#include <poll.h>

#include <algorithm>
#include <functional>
#include <vector>

#include "common/posix.h"

namespace krunbox::net {

class PollSet {
 public:
  using Handler = std::function<void(short revents)>;

  void Add(int fd, short events, Handler handler) {
    fds_.push_back({fd, events, 0});
    handlers_.push_back(std::move(handler));
  }

  // Waits for events or `deadline` (NowMs() clock; -1: none), then runs handlers.
  void Run(int64_t deadline) {
    const int timeout = deadline < 0 ? -1 : static_cast<int>(std::min<int64_t>(std::max<int64_t>(0, deadline - NowMs()), 60000));
    if (poll(fds_.data(), fds_.size(), timeout) <= 0) return;
    for (size_t i = 0; i < fds_.size(); i++)
      if (fds_[i].revents) handlers_[i](fds_[i].revents);
  }

 private:
  std::vector<pollfd> fds_;
  std::vector<Handler> handlers_;
};

}  // namespace krunbox::net
