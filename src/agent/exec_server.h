// The agent's exec service: the host keeps connections open and runs one
// process at a time on each, speaking the frames of common/exec_protocol.h.
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
  bool Idle() const;
  // Milliseconds until the next exec timeout, or -1.
  int NextTimeoutMs() const;
  void ExpireTimeouts();

 private:
  // One connection: between execs `pid` is -1 and only EXEC starts one.
  struct Session {
    Fd sock, stdinFd, stdoutFd, stderrFd;
    Fd terminal;  // the pseudo-terminal's master side, for a process with a tty
    std::string in, out, stdinBuf;
    pid_t pid = -1;
    bool stdinEof = false, hostGone = false, timedOut = false;
    int64_t deadline = -1;
  };
  void Accept();
  void OnFrame(Session& s, uint8_t type, const std::string& payload);
  void Start(Session& s, const std::string& json);
  void Send(Session& s, uint8_t type, const std::string& payload);
  void SendError(Session& s, const std::string& message, const std::string& field = "", int error = 0);
  void Pump(Session& s, const std::vector<pollfd>& fds);
  void Drain(Session& s, Fd& fd, uint8_t type, bool bounded);
  void Signal(const Session& s, int sig, bool foregroundJob);
  void Finish(Session& s, const std::string& exitJson);

  Fd listen_;
  std::list<Session> sessions_;
};

}  // namespace agent
