// The agent's exec service: the host opens one vsock connection per process.
//
// Frames both ways: u32 little-endian length of (type + payload), u8 type,
// payload; at most kMaxFrame bytes. Protocol version 1.
//   host -> guest  EXEC {"v":1,"argv":[..],"env":[..],"cwd":"/","user":"",
//                        "timeoutMs":0}   (first frame, once)
//                  STDIN bytes | STDIN_EOF | SIGNAL u32
//   guest -> host  STARTED {"pid":n} | STDOUT bytes | STDERR bytes |
//                  EXIT {"code":n} or {"signal":n}, plus "timedOut":true |
//                  ERROR {"message":".."}
// Closing the connection kills the process group.
#pragma once

#include <poll.h>
#include <sys/types.h>

#include <list>
#include <string>
#include <vector>

namespace agent {

enum FrameType : uint8_t {
  kExec = 1,
  kStdin = 2,
  kStdinEof = 3,
  kSignal = 4,
  kStarted = 16,
  kStdout = 17,
  kStderr = 18,
  kExit = 19,
  kError = 20,
};
constexpr uint32_t kProtocolVersion = 1;
constexpr uint32_t kMaxFrame = 1 << 20;

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
    int sock = -1;
    std::string in, out, stdinBuf;
    pid_t pid = -1;
    int stdinFd = -1, stdoutFd = -1, stderrFd = -1;
    bool stdinEof = false, hostGone = false, done = false, timedOut = false;
    long long deadline = -1;
  };
  void Accept();
  void OnFrame(Session& s, uint8_t type, const std::string& payload);
  void Start(Session& s, const std::string& json);
  void Send(Session& s, uint8_t type, const std::string& payload);
  void Pump(Session& s, const std::vector<pollfd>& fds);
  void Drain(Session& s, int& fd, uint8_t type, bool bounded);
  void Finish(Session& s, const std::string& exitJson);
  static void CloseFd(int& fd);

  int listen_ = -1;
  std::list<Session> sessions_;
};

}  // namespace agent
