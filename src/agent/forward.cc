#include "agent/forward.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent/vsock.h"

namespace agent {
namespace {
constexpr size_t kMaxRequest = 32;
constexpr int64_t kRequestMs = 10000;
}  // namespace

using krunbox::Fd;
using krunbox::NowMs;
using krunbox::PollEvents;

ForwardServer::ForwardServer(uint32_t port) : listen_(VsockListen(port)) { krunbox::SetNonBlocking(listen_.get()); }

void ForwardServer::AddPollFds(std::vector<pollfd>& fds) const {
  fds.push_back({listen_.get(), POLLIN, 0});
  for (const Conn& c : conns_) {
    if (c.splice) c.splice->AddPollFds(fds);
    else if (c.guest.valid()) fds.push_back({c.guest.get(), POLLOUT, 0});
    else fds.push_back({c.host.get(), POLLIN, 0});
  }
}

void ForwardServer::Handle(const std::vector<pollfd>& fds) {
  if (PollEvents(fds, listen_.get()) & POLLIN) {
    for (;;) {
      Fd c(accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
      if (!c.valid()) break;
      Conn& conn = conns_.emplace_back();
      conn.host = std::move(c);
      conn.deadline = NowMs() + kRequestMs;
    }
  }
  const int64_t now = NowMs();
  for (Conn& c : conns_) {
    if (c.splice) {
      if (!c.splice->Pump(fds)) c.done = true;
      continue;
    }
    if (c.guest.valid()) {
      if (!PollEvents(fds, c.guest.get())) continue;
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(c.guest.get(), SOL_SOCKET, SO_ERROR, &err, &len);
      if (err == 0) {
        Reply(c, "ok\n");
        // The guest server's end closes the vsock connection: a half-close
        // would not reach the host.
        c.splice = std::make_unique<krunbox::Splice>(std::move(c.host), std::move(c.guest), krunbox::SpliceEnds{true, true});
      } else if (c.family == AF_INET) {
        c.family = AF_INET6;  // a server listening on ::1 only
        Dial(c);
      } else {
        Reply(c, std::string("error ") + strerror(err) + "\n");
        c.done = true;
      }
    } else if (PollEvents(fds, c.host.get())) {
      ReadRequest(c);
    }
    if (!c.splice && now > c.deadline) c.done = true;
  }
  conns_.remove_if([](const Conn& c) { return c.done; });
}

void ForwardServer::ReadRequest(Conn& c) {
  char buf[kMaxRequest];
  const ssize_t n = read(c.host.get(), buf, kMaxRequest - c.request.size());
  if (n <= 0) {
    if (n == 0 || errno != EAGAIN) c.done = true;
    return;
  }
  c.request.append(buf, static_cast<size_t>(n));
  const size_t nl = c.request.find('\n');
  if (nl == std::string::npos) {
    if (c.request.size() >= kMaxRequest) c.done = true;
    return;
  }
  const std::string line = c.request.substr(0, nl);
  char* end = nullptr;
  const long port = line.rfind("connect ", 0) == 0 ? strtol(line.c_str() + 8, &end, 10) : 0;
  if (port < 1 || port > 65535 || !end || *end || nl + 1 != c.request.size()) {
    Reply(c, "error bad request\n");
    c.done = true;
    return;
  }
  c.port = static_cast<uint16_t>(port);
  c.family = AF_INET;
  Dial(c);
}

void ForwardServer::Dial(Conn& c) {
  sockaddr_storage addr{};
  socklen_t len;
  if (c.family == AF_INET) {
    auto* in = reinterpret_cast<sockaddr_in*>(&addr);
    in->sin_family = AF_INET;
    in->sin_port = htons(c.port);
    in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    len = sizeof *in;
  } else {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&addr);
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(c.port);
    in6->sin6_addr = in6addr_loopback;
    len = sizeof *in6;
  }
  c.guest = Fd(socket(c.family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (c.guest.valid() &&
      (connect(c.guest.get(), reinterpret_cast<sockaddr*>(&addr), len) == 0 || errno == EINPROGRESS))
    return;  // the outcome arrives as POLLOUT
  const int err = errno;
  c.guest.reset();
  if (c.family == AF_INET) {
    c.family = AF_INET6;
    return Dial(c);
  }
  Reply(c, std::string("error ") + strerror(err) + "\n");
  c.done = true;
}

void ForwardServer::Reply(Conn& c, const std::string& line) {
  (void)!send(c.host.get(), line.data(), line.size(), MSG_NOSIGNAL);
}

}  // namespace agent
