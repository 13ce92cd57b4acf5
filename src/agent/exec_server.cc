#include "agent/exec_server.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>

#include <nlohmann/json.hpp>

#include "agent/setup.h"
#include "agent/process.h"
#include "agent/vsock.h"
#include "common/frame.h"

namespace agent {
namespace {

// Output waiting for a slow host, and input waiting for a slow process, are
// capped: past this the agent stops reading that side (backpressure).
constexpr size_t kBufferCap = 1 << 20;
constexpr size_t kChunk = 64 * 1024;

}  // namespace

using krunbox::kMaxFrame;
using krunbox::NowMs;
using krunbox::PollEvents;
using krunbox::SetNonBlocking;

ExecServer::ExecServer(uint32_t port) : listen_(VsockListen(port)) { SetNonBlocking(listen_.get()); }

void ExecServer::AddPollFds(std::vector<pollfd>& fds) const {
  fds.push_back({listen_.get(), POLLIN, 0});
  for (const Session& s : sessions_) {
    if (s.sock.valid()) {
      short ev = 0;
      if (s.stdinBuf.size() < kBufferCap && s.in.size() < kMaxFrame + 5) ev |= POLLIN;
      if (!s.out.empty()) ev |= POLLOUT;
      fds.push_back({s.sock.get(), ev, 0});
    }
    const bool room = s.out.size() < kBufferCap;
    if (s.stdoutFd.valid() && room) fds.push_back({s.stdoutFd.get(), POLLIN, 0});
    if (s.stderrFd.valid() && room) fds.push_back({s.stderrFd.get(), POLLIN, 0});
    if (s.stdinFd.valid() && !s.stdinBuf.empty()) fds.push_back({s.stdinFd.get(), POLLOUT, 0});
  }
}

void ExecServer::Accept() {
  for (;;) {
    Fd c(accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!c.valid()) return;
    sessions_.emplace_back().sock = std::move(c);
  }
}

void ExecServer::Send(Session& s, uint8_t type, const std::string& payload) { krunbox::AppendFrame(s.out, type, payload); }

void ExecServer::Start(Session& s, const std::string& json) {
  ExecSpec spec;
  int timeoutMs = 0;
  const char* field = nullptr;  // the option a SetupError is about, for the host
  try {
    const nlohmann::json j = nlohmann::json::parse(json);
    if (j.value("v", 0u) != krunbox::kProtocolVersion)
      throw SetupError("protocol version " + std::to_string(j.value("v", 0u)) + " is not supported (agent speaks 1)");
    const bool checkOnly = j.value("checkOnly", false);
    spec.argv = j.at("argv").get<std::vector<std::string>>();
    if (!checkOnly && (spec.argv.empty() || spec.argv[0].empty())) throw SetupError("argv is empty");
    spec.env = j.value("env", std::vector<std::string>{});
    spec.cwd = j.value("cwd", std::string("/"));
    timeoutMs = j.value("timeoutMs", 0);
    field = "user";
    ResolveUser(j.value("user", std::string()), spec);
    field = "cwd";
    CheckCwd(spec.cwd);
    field = nullptr;
    if (checkOnly) {
      Send(s, krunbox::kExit, nlohmann::json{{"code", 0}}.dump());
      s.done = true;
      return;
    }
  } catch (const std::exception& e) {
    nlohmann::json error{{"message", e.what()}};
    if (field) error["field"] = field;
    Send(s, krunbox::kError, error.dump());
    s.done = true;
    return;
  }
  int in[2], out[2], err[2];
  if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
    Send(s, krunbox::kError, nlohmann::json{{"message", std::string("pipe: ") + strerror(errno)}}.dump());
    s.done = true;
    return;
  }
  s.pid = Launch(spec, in[0], out[1], err[1]);
  close(in[0]);
  close(out[1]);
  close(err[1]);
  s.stdinFd = Fd(in[1]);
  s.stdoutFd = Fd(out[0]);
  s.stderrFd = Fd(err[0]);
  if (s.pid < 0) {
    Send(s, krunbox::kError, nlohmann::json{{"message", std::string("fork: ") + strerror(errno)}}.dump());
    s.stdinFd.reset();
    s.stdoutFd.reset();
    s.stderrFd.reset();
    s.done = true;
    return;
  }
  for (const Fd* fd : {&s.stdinFd, &s.stdoutFd, &s.stderrFd}) SetNonBlocking(fd->get());
  if (timeoutMs > 0) s.deadline = NowMs() + timeoutMs;
  Send(s, krunbox::kStarted, nlohmann::json{{"pid", s.pid}}.dump());
}

void ExecServer::OnFrame(Session& s, uint8_t type, const std::string& payload) {
  using namespace krunbox;
  if (type == kExec && s.pid < 0 && !s.done) {
    Start(s, payload);
  } else if (type == kStdin && s.stdinFd.valid()) {
    s.stdinBuf += payload;
  } else if (type == kStdinEof) {
    s.stdinEof = true;
  } else if (type == kSignal && payload.size() == 4) {
    // After the process has ended (its output may still be queued for the
    // host), a signal has nothing to reach and changes nothing.
    const int sig = static_cast<uint8_t>(payload[0]) | static_cast<uint8_t>(payload[1]) << 8;
    if (s.pid > 0 && sig > 0 && sig < 65) kill(-s.pid, sig);
  } else if (type != kStdin) {
    // A frame out of order: the host is confused or hostile; end the exec.
    s.hostGone = true;
  }
}

void ExecServer::Drain(Session& s, Fd& fd, uint8_t type, bool bounded) {
  char buf[kChunk];
  for (;;) {
    ssize_t n = read(fd.get(), buf, sizeof buf);
    if (n > 0) {
      Send(s, type, std::string(buf, static_cast<size_t>(n)));
      if (bounded && s.out.size() >= kBufferCap) return;
      continue;
    }
    if (n == 0 || (errno != EAGAIN && errno != EINTR)) fd.reset();
    return;
  }
}

void ExecServer::Pump(Session& s, const std::vector<pollfd>& fds) {
  if (PollEvents(fds, s.sock.get()) & (POLLIN | POLLHUP | POLLERR)) {
    char buf[kChunk];
    ssize_t n = read(s.sock.get(), buf, sizeof buf);
    if (n > 0) {
      s.in.append(buf, static_cast<size_t>(n));
    } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
      s.hostGone = true;
    }
  }
  while (s.in.size() >= 5 && !s.hostGone) {
    const uint32_t len = krunbox::FrameLength(s.in.data());
    if (len == 0 || len > kMaxFrame) {
      s.hostGone = true;
      break;
    }
    if (s.in.size() < 4 + len) break;
    const uint8_t type = static_cast<uint8_t>(s.in[4]);
    const std::string payload = s.in.substr(5, len - 1);
    s.in.erase(0, 4 + len);
    OnFrame(s, type, payload);
  }
  if (s.stdinFd.valid() && !s.stdinBuf.empty()) {
    ssize_t n = write(s.stdinFd.get(), s.stdinBuf.data(), s.stdinBuf.size());
    if (n > 0) s.stdinBuf.erase(0, static_cast<size_t>(n));
    else if (n < 0 && errno != EAGAIN && errno != EINTR) {
      s.stdinBuf.clear();  // the process closed its stdin
      s.stdinFd.reset();
    }
  }
  if (s.stdinEof && s.stdinBuf.empty()) s.stdinFd.reset();
  if (s.out.size() < kBufferCap) {
    if (PollEvents(fds, s.stdoutFd.get())) Drain(s, s.stdoutFd, krunbox::kStdout, true);
    if (PollEvents(fds, s.stderrFd.get())) Drain(s, s.stderrFd, krunbox::kStderr, true);
  }
  if (!s.out.empty() && s.sock.valid()) {
    ssize_t n = write(s.sock.get(), s.out.data(), s.out.size());
    if (n > 0) s.out.erase(0, static_cast<size_t>(n));
    else if (n < 0 && errno != EAGAIN && errno != EINTR) s.hostGone = true;
  }
  if (s.hostGone && s.pid > 0) kill(-s.pid, SIGKILL);
}

void ExecServer::Handle(const std::vector<pollfd>& fds) {
  if (PollEvents(fds, listen_.get()) & POLLIN) Accept();
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    Session& s = *it;
    Pump(s, fds);
    // Ends once the host has everything (or is gone) and no process is left.
    const bool flushed = s.out.empty() || s.hostGone;
    if ((s.done && flushed) || (s.hostGone && s.pid < 0)) {
      it = sessions_.erase(it);
    } else {
      ++it;
    }
  }
}

void ExecServer::Finish(Session& s, const std::string& exitJson) {
  // What the process wrote before it ended is already in the pipes (at
  // most a pipe's capacity each), so this read is bounded too.
  if (s.stdoutFd.valid()) Drain(s, s.stdoutFd, krunbox::kStdout, false);
  if (s.stderrFd.valid()) Drain(s, s.stderrFd, krunbox::kStderr, false);
  s.stdinFd.reset();
  s.stdoutFd.reset();
  s.stderrFd.reset();
  Send(s, krunbox::kExit, exitJson);
  s.pid = -1;
  s.done = true;
}

bool ExecServer::OnExit(pid_t pid, int status) {
  for (Session& s : sessions_) {
    if (s.pid != pid) continue;
    // Background processes it left in its group go with it.
    kill(-pid, SIGKILL);
    nlohmann::json j;
    if (WIFSIGNALED(status)) j["signal"] = WTERMSIG(status);
    else j["code"] = WEXITSTATUS(status);
    if (s.timedOut) j["timedOut"] = true;
    Finish(s, j.dump());
    return true;
  }
  return false;
}

void ExecServer::KillAll(int sig) {
  for (Session& s : sessions_)
    if (s.pid > 0) kill(-s.pid, sig);
}

int ExecServer::NextTimeoutMs() const {
  int64_t next = -1;
  for (const Session& s : sessions_)
    if (s.pid > 0 && s.deadline >= 0 && !s.timedOut && (next < 0 || s.deadline < next)) next = s.deadline;
  if (next < 0) return -1;
  return static_cast<int>(std::max<int64_t>(0, next - NowMs()));
}

void ExecServer::ExpireTimeouts() {
  const int64_t now = NowMs();
  for (Session& s : sessions_) {
    if (s.pid > 0 && s.deadline >= 0 && !s.timedOut && now >= s.deadline) {
      s.timedOut = true;
      kill(-s.pid, SIGKILL);
    }
  }
}

}  // namespace agent
