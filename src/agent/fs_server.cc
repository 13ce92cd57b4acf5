#include "agent/fs_server.h"

#include <errno.h>
#include <grp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "agent/fs_worker.h"
#include "agent/process.h"
#include "agent/setup.h"
#include "agent/vsock.h"
#include "common/fs_protocol.h"

namespace agent {
namespace {

using nlohmann::json;

// Workers at once; a host that opens more waits for its connections to end
// (each is a process in the guest's memory).
constexpr size_t kMaxWorkers = 128;

// Reads HELLO, becomes the sandbox's user inside its root, then serves
// requests until the host closes the connection.
[[noreturn]] void RunWorker(int sock) {
  FsConn c(sock);
  uint8_t type;
  std::string payload;
  if (!c.Read(type, payload) || type != krunbox::kFsHello) _exit(0);
  ExecSpec who;
  try {
    const json hello = json::parse(payload);
    if (hello.value("v", 0u) != krunbox::kFsProtocolVersion)
      throw SetupError("file protocol version " + std::to_string(hello.value("v", 0u)) + " is not supported (agent speaks 1)");
    // Before the chroot: users come from the sandbox root's /etc/passwd.
    ResolveUser(hello.value("user", std::string()), who);
  } catch (const std::exception& e) {
    c.Send(krunbox::kFsError, json{{"errno", EINVAL}, {"syscall", "hello"}, {"path", ""}, {"message", e.what()}}.dump());
    _exit(0);
  }
  if (chroot(kNewRoot) != 0 || chdir("/") != 0 || setgroups(0, nullptr) != 0 || setgid(who.gid) != 0 ||
      setuid(who.uid) != 0) {
    c.Fail({errno, "hello", ""});
    _exit(0);
  }
  c.Ok();
  while (c.Read(type, payload)) {
    if (type != krunbox::kFsRequest) _exit(0);  // out of step: the host is confused or hostile
    json req;
    try {
      req = json::parse(payload);
    } catch (const std::exception&) {
      _exit(0);
    }
    HandleRequest(c, req);
  }
  _exit(0);
}

}  // namespace

// Connections beyond the backlog are refused while workers fork (slowly,
// under TCG): room for as many as there may be workers.
FsServer::FsServer(uint32_t port) : listen_(VsockListen(port, kMaxWorkers)) { krunbox::SetNonBlocking(listen_.get()); }

void FsServer::AddPollFds(std::vector<pollfd>& fds) const {
  if (workers_.size() < kMaxWorkers) fds.push_back({listen_.get(), POLLIN, 0});
}

void FsServer::Handle(const std::vector<pollfd>& fds) {
  if (!(krunbox::PollEvents(fds, listen_.get()) & POLLIN)) return;
  while (workers_.size() < kMaxWorkers) {
    krunbox::Fd c(accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!c.valid()) return;
    const pid_t pid = fork();
    if (pid == 0) {
      sigset_t none;
      sigemptyset(&none);
      sigprocmask(SIG_SETMASK, &none, nullptr);
      signal(SIGPIPE, SIG_IGN);  // a closed connection is a failed write, not a death
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      // Nothing of PID 1's (other connections, the control line) stays open.
      const int sock = c.release();
      close_range(3, static_cast<unsigned>(sock) - 1, 0);
      close_range(static_cast<unsigned>(sock) + 1, ~0U, 0);
      umask(022);
      RunWorker(sock);
    }
    if (pid > 0) workers_.insert(pid);
  }
}

bool FsServer::OnExit(pid_t pid) { return workers_.erase(pid) > 0; }

void FsServer::KillAll(int sig) {
  for (pid_t p : workers_) kill(p, sig);
}

}  // namespace agent
