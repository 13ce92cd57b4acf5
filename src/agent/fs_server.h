// The agent's file service (common/fs_protocol.h): PID 1 accepts each
// connection and forks a worker for it, so a slow or blocking file
// operation (a FIFO, a huge copy) never stalls execs or other connections.
#pragma once

#include <poll.h>
#include <sys/types.h>

#include <set>
#include <vector>

#include "common/posix.h"

namespace agent {

class FsServer {
 public:
  explicit FsServer(uint32_t port);
  void AddPollFds(std::vector<pollfd>& fds) const;
  void Handle(const std::vector<pollfd>& fds);
  // A reaped child: true if it was one of our workers.
  bool OnExit(pid_t pid);
  void KillAll(int sig);

 private:
  krunbox::Fd listen_;
  std::set<pid_t> workers_;
};

}  // namespace agent
