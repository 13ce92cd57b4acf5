#include "runner/net/ports.h"

#include <errno.h>
#include <algorithm>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "runner/util.h"

namespace krunbox::net {
namespace {

constexpr int64_t kReplyMs = 10000;
constexpr size_t kMaxReply = 128;
constexpr size_t kMaxConns = 256;

// Closes a client with a reset: the guest port refused, or the guest is gone.
void Abort(Fd& fd) {
  const linger now{1, 0};
  if (fd.valid()) setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &now, sizeof now);
  fd.reset();
}

}  // namespace

PublishedPorts::PublishedPorts(const std::vector<PortForward>& ports, std::string forwardSocket)
    : forwardSocket_(std::move(forwardSocket)) {
  for (size_t i = 0; i < ports.size(); i++) {
    const PortForward& p = ports[i];
    const std::string field = "ports[" + std::to_string(i) + "]";
    const IpAddress ip = *IpAddress::Parse(p.hostIp);
    sockaddr_storage addr;
    socklen_t len = ip.ToSockaddr(p.hostPort, addr);
    Fd fd(socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    const int one = 1;
    setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (!fd.valid() || bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), len) != 0 || listen(fd.get(), 64) != 0) {
      const std::string where = "host port " + std::to_string(p.hostPort) + " on " + p.hostIp;
      if (errno == EADDRINUSE)
        throw RunnerError("PORT_IN_USE", field + ": " + where +
                                             " is already in use; publish another port, or host port 0 for any free one");
      throw ConfigError(field, "cannot listen on " + where + ": " + strerror(errno));
    }
    len = sizeof addr;
    getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len);
    PortForward bound = p;
    bound.hostPort = ntohs(addr.ss_family == AF_INET ? reinterpret_cast<sockaddr_in*>(&addr)->sin_port
                                                     : reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
    listeners_.push_back({bound, std::move(fd)});
  }
}

nlohmann::json PublishedPorts::Describe() const {
  nlohmann::json out = nlohmann::json::array();
  for (const Listener& l : listeners_)
    out.push_back({{"guest", l.spec.guestPort}, {"host", l.spec.hostPort}, {"hostIp", l.spec.hostIp}});
  return out;
}

void PublishedPorts::AddPollFds(PollSet& ps) {
  for (Listener& l : listeners_)
    if (conns_.size() < kMaxConns) ps.Add(l.fd.get(), POLLIN, [this, &l](short) { Accept(l); });
  for (auto& owned : conns_) {
    Conn* c = owned.get();
    if (!c->splice) {
      ps.Add(c->guest.get(), POLLIN, [this, c](short) { ReadReply(*c); });
      continue;
    }
    c->events.clear();
    c->splice->AddPollFds(c->events);
    for (size_t i = 0; i < c->events.size(); i++)
      ps.Add(c->events[i].fd, c->events[i].events, [c, i](short revents) { c->events[i].revents = revents; });
  }
}

void PublishedPorts::Accept(Listener& l) {
  Fd client(accept4(l.fd.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
  if (!client.valid()) return;
  auto c = std::make_unique<Conn>();
  c->client = std::move(client);
  c->guest = Fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  memcpy(addr.sun_path, forwardSocket_.c_str(), std::min(forwardSocket_.size(), sizeof addr.sun_path - 1));
  const std::string request = "connect " + std::to_string(l.spec.guestPort) + "\n";
  if (!c->guest.valid() || connect(c->guest.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      send(c->guest.get(), request.data(), request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request.size()))
    return Abort(c->client);
  c->deadline = NowMs() + kReplyMs;
  conns_.push_back(std::move(c));
}

void PublishedPorts::ReadReply(Conn& c) {
  char buf[kMaxReply];
  const ssize_t n = recv(c.guest.get(), buf, kMaxReply - c.reply.size(), MSG_DONTWAIT);
  if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
    c.done = true;
    return;
  }
  if (n > 0) c.reply.append(buf, static_cast<size_t>(n));
  const size_t nl = c.reply.find('\n');
  if (nl == std::string::npos) {
    if (c.reply.size() >= kMaxReply) c.done = true;
    return;
  }
  if (c.reply.compare(0, nl, "ok") != 0) {
    c.done = true;
    return;
  }
  // Nothing follows "ok" before the client speaks... except a server's
  // greeting, which goes to the client first.
  const std::string early = c.reply.substr(nl + 1);
  if (!early.empty()) send(c.client.get(), early.data(), early.size(), MSG_NOSIGNAL);
  // A client's half-close is not passed on: the vsock side would drop what
  // the guest had not sent yet. The connection ends when the guest's does.
  c.splice = std::make_unique<Splice>(std::move(c.client), std::move(c.guest), SpliceEnds{false, false});
}

void PublishedPorts::AfterRound() {
  const int64_t now = NowMs();
  for (auto& c : conns_) {
    if (c->splice) {
      bool ready = false;
      for (const pollfd& p : c->events) ready |= p.revents != 0;
      if (ready && !c->splice->Pump(c->events)) c->done = true;
      for (pollfd& p : c->events) p.revents = 0;
    } else if (now > c->deadline) {
      c->done = true;
    }
    if (c->done && c->client.valid()) Abort(c->client);
  }
  conns_.erase(std::remove_if(conns_.begin(), conns_.end(), [](const auto& c) { return c->done; }), conns_.end());
}

}  // namespace krunbox::net
