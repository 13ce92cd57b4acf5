// The agent's exec service: the host opens one vsock connection per process
// and speaks the frames of common/exec_protocol.h.
#pragma once

#include <poll.h>
#include <sys/types.h>

#include <list>
#include <string>
#include <vector>

#include "common/exec_protocol.h"
#include "common/posix.h"

namespace agent {

using krunbox::Fd;

class ExecServer {
 public:
  explicit ExecServer(uint32_t port);
  void AddPollFds(std::vector<pollfd>& fds) const;
  void Handle(const std::vector<pollfd>& fds);
  // A reaped child: true if it was one of ours.
  bool OnExit(pid_t pid, int status);
  void KillAll(int sig);
  bool Idle() const { return sessions_.empty(); }
  // Milliseconds until the next exec timeout, or -1.
  int NextTimeoutMs() const;
  void ExpireTimeouts();

 private:
  struct Session {
    Fd sock, stdinFd, stdoutFd, stderrFd;
    std::string in, out, stdinBuf;
    pid_t pid = -1;
    bool stdinEof = false, hostGone = false, done = false, timedOut = false;
    int64_t deadline = -1;
  };
  void Accept();
  void OnFrame(Session& s, uint8_t type, const std::string& payload);
  void Start(Session& s, const std::string& json);
  void Send(Session& s, uint8_t type, const std::string& payload);
  void Pump(Session& s, const std::vector<pollfd>& fds);
  void Drain(Session& s, Fd& fd, uint8_t type, bool bounded);
  void Finish(Session& s, const std::string& exitJson);

  Fd listen_;
  std::list<Session> sessions_;
};

}  // namespace agent
