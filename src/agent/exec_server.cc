#include "agent/exec_server.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
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
// Connections the host may keep open (most of them idle, between execs).
constexpr int kBacklog = 64;

uint16_t U16(const std::string& b, size_t at) {
  return static_cast<uint16_t>(static_cast<uint8_t>(b[at]) | static_cast<uint8_t>(b[at + 1]) << 8);
}

}  // namespace

using krunbox::kMaxFrame;
using krunbox::NowMs;
using krunbox::PollEvents;
using krunbox::SetNonBlocking;

ExecServer::ExecServer(uint32_t port) : listen_(VsockListen(port, kBacklog)) { SetNonBlocking(listen_.get()); }

bool ExecServer::Idle() const {
  return std::none_of(sessions_.begin(), sessions_.end(), [](const Session& s) { return s.pid > 0; });
}

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

void ExecServer::SendError(Session& s, const std::string& message, const std::string& field, int error) {
  nlohmann::json j{{"message", message}};
  if (!field.empty()) j["field"] = field;
  if (error > 0) j["errno"] = error;
  Send(s, krunbox::kError, j.dump());
}

void ExecServer::Start(Session& s, const std::string& json) {
  ExecSpec spec;
  int timeoutMs = 0;
  nlohmann::json tty;
  const char* field = nullptr;  // the option a SetupError is about, for the host
  try {
    const nlohmann::json j = nlohmann::json::parse(json);
    if (j.value("v", 0u) != krunbox::kProtocolVersion)
      throw SetupError("protocol version " + std::to_string(j.value("v", 0u)) + " is not supported (agent speaks " +
                       std::to_string(krunbox::kProtocolVersion) + ")");
    const bool checkOnly = j.value("checkOnly", false);
    spec.argv = j.at("argv").get<std::vector<std::string>>();
    if (!checkOnly && (spec.argv.empty() || spec.argv[0].empty())) throw SetupError("argv is empty");
    spec.env = j.value("env", std::vector<std::string>{});
    spec.cwd = j.value("cwd", std::string("/"));
    timeoutMs = j.value("timeoutMs", 0);
    tty = j.value("tty", nlohmann::json());
    field = "user";
    ResolveUser(j.value("user", std::string()), spec);
    field = nullptr;
    if (checkOnly) {
      // A process checks its cwd as it starts (after switching user).
      field = "cwd";
      CheckCwd(spec.cwd);
      Send(s, krunbox::kExit, nlohmann::json{{"code", 0}}.dump());
      return;
    }
  } catch (const std::exception& e) {
    SendError(s, e.what(), field ? field : "");
    return;
  }
  Stdio io;
  Fd childIn, childOut, childErr, slave;
  try {
    if (tty.is_object()) {
      Terminal t = OpenTerminal(tty.value("cols", uint16_t{80}), tty.value("rows", uint16_t{24}), spec.uid);
      // Separate descriptors: the end of the host's input closes only one.
      s.stdinFd = Fd(fcntl(t.master.get(), F_DUPFD_CLOEXEC, 0));
      s.stdoutFd = Fd(fcntl(t.master.get(), F_DUPFD_CLOEXEC, 0));
      s.terminal = std::move(t.master);
      slave = std::move(t.slave);
      io.terminal = slave.get();
    } else {
      int in[2], out[2], err[2];
      if (pipe2(in, O_CLOEXEC) != 0) Fail("pipe");
      s.stdinFd = Fd(in[1]), childIn = Fd(in[0]);
      if (pipe2(out, O_CLOEXEC) != 0) Fail("pipe");
      s.stdoutFd = Fd(out[0]), childOut = Fd(out[1]);
      if (pipe2(err, O_CLOEXEC) != 0) Fail("pipe");
      s.stderrFd = Fd(err[0]), childErr = Fd(err[1]);
      io = {childIn.get(), childOut.get(), childErr.get()};
    }
    if (!s.stdinFd.valid() || !s.stdoutFd.valid()) Fail("dup");
    s.pid = Launch(spec, io);
  } catch (const std::exception& e) {
    const auto* launch = dynamic_cast<const LaunchError*>(&e);
    SendError(s, e.what(), launch ? launch->field : "", launch ? launch->error : 0);
    s.stdinFd.reset();
    s.stdoutFd.reset();
    s.stderrFd.reset();
    s.terminal.reset();
    return;
  }
  for (const Fd* fd : {&s.stdinFd, &s.stdoutFd, &s.stderrFd})
    if (fd->valid()) SetNonBlocking(fd->get());
  s.stdinEof = s.timedOut = false;
  s.deadline = timeoutMs > 0 ? NowMs() + timeoutMs : -1;
  Send(s, krunbox::kStarted, nlohmann::json{{"pid", s.pid}}.dump());
}

void ExecServer::OnFrame(Session& s, uint8_t type, const std::string& payload) {
  using namespace krunbox;
  // Input, EOF, signals and sizes for an exec that has ended (the host
  // sent them before it learned so) change nothing.
  if (type == kExec && s.pid < 0) {
    Start(s, payload);
  } else if (type == kStdin) {
    if (s.stdinFd.valid()) s.stdinBuf += payload;
  } else if (type == kStdinEof) {
    if (s.pid > 0) s.stdinEof = true;
  } else if (type == kSignal && payload.size() == 4) {
    const int sig = static_cast<int>(U16(payload, 0));
    if (s.pid > 0 && sig > 0 && sig < 65) Signal(s, sig, false);
  } else if (type == kResize && payload.size() == 4) {
    if (s.terminal.valid()) ResizeTerminal(s.terminal.get(), U16(payload, 0), U16(payload, 2));
  } else {
    // A frame out of order: the host is confused or hostile; end the exec.
    s.hostGone = true;
  }
}

void ExecServer::Signal(const Session& s, int sig, bool foregroundJob) {
  kill(-s.pid, sig);
  if (!foregroundJob || !s.terminal.valid()) return;
  // A shell with job control runs each job in a group of its own.
  const pid_t job = tcgetpgrp(s.terminal.get());
  if (job > 0 && job != s.pid) kill(-job, sig);
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
    // A terminal's master reads EIO once no process holds the slave.
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
  size_t used = 0;
  while (s.in.size() - used >= 5 && !s.hostGone) {
    const uint32_t len = krunbox::FrameLength(s.in.data() + used);
    if (len == 0 || len > kMaxFrame) {
      s.hostGone = true;
      break;
    }
    if (s.in.size() - used < 4 + len) break;
    const uint8_t type = static_cast<uint8_t>(s.in[used + 4]);
    const std::string payload = s.in.substr(used + 5, len - 1);
    used += 4 + len;
    OnFrame(s, type, payload);
  }
  s.in.erase(0, used);
  if (s.stdinFd.valid() && !s.stdinBuf.empty()) {
    ssize_t n = write(s.stdinFd.get(), s.stdinBuf.data(), s.stdinBuf.size());
    if (n > 0) s.stdinBuf.erase(0, static_cast<size_t>(n));
    else if (n < 0 && errno != EAGAIN && errno != EINTR) {
      s.stdinBuf.clear();  // the process closed its stdin
      s.stdinFd.reset();
    }
  }
  // A terminal stays open at the end of the host's input: a process reads
  // its end-of-file from the line discipline (^D), as in a real terminal.
  if (s.stdinEof && s.stdinBuf.empty() && !s.terminal.valid()) s.stdinFd.reset();
  if (s.out.size() < kBufferCap) {
    if (PollEvents(fds, s.stdoutFd.get())) Drain(s, s.stdoutFd, krunbox::kStdout, true);
    if (PollEvents(fds, s.stderrFd.get())) Drain(s, s.stderrFd, krunbox::kStderr, true);
  }
  if (!s.out.empty() && s.sock.valid()) {
    ssize_t n = write(s.sock.get(), s.out.data(), s.out.size());
    if (n > 0) s.out.erase(0, static_cast<size_t>(n));
    else if (n < 0 && errno != EAGAIN && errno != EINTR) s.hostGone = true;
  }
  if (s.hostGone && s.pid > 0) Signal(s, SIGKILL, true);
}

void ExecServer::Handle(const std::vector<pollfd>& fds) {
  if (PollEvents(fds, listen_.get()) & POLLIN) Accept();
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    Session& s = *it;
    Pump(s, fds);
    // Ends when the host has closed it and no process is left.
    if (s.hostGone && s.pid < 0) {
      it = sessions_.erase(it);
    } else {
      ++it;
    }
  }
}

void ExecServer::Finish(Session& s, const std::string& exitJson) {
  // What the process wrote before it ended is already in the pipes or the
  // terminal (at most their capacity), so this read is bounded too.
  if (s.stdoutFd.valid()) Drain(s, s.stdoutFd, krunbox::kStdout, false);
  if (s.stderrFd.valid()) Drain(s, s.stderrFd, krunbox::kStderr, false);
  s.stdinFd.reset();
  s.stdoutFd.reset();
  s.stderrFd.reset();
  s.terminal.reset();
  s.stdinBuf.clear();
  s.deadline = -1;
  Send(s, krunbox::kExit, exitJson);
  s.pid = -1;
}

bool ExecServer::OnExit(pid_t pid, int status) {
  for (Session& s : sessions_) {
    if (s.pid != pid) continue;
    // Background processes it left in its group go with it (its terminal,
    // if it had one, hung up its foreground job as it ended).
    Signal(s, SIGKILL, true);
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
    if (s.pid > 0) Signal(s, sig, true);
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
      Signal(s, SIGKILL, true);
    }
  }
}

}  // namespace agent
