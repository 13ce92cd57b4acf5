#include "runner/net/egress.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "runner/net/guest_network.h"

namespace krunbox::net {
namespace {

constexpr int64_t kConnectTimeoutMs = 10000;
constexpr int64_t kVerdictTimeoutMs = 10000;
constexpr int64_t kNameTtlMs = 60000, kMissingNameTtlMs = 5000;
constexpr size_t kMaxAttempts = 256;
constexpr size_t kMaxWaiting = 512;  // DNS questions and attempts waiting for the host's resolver
constexpr size_t kMaxNames = 4096;
constexpr int64_t kHostAddressesRefreshMs = 30000;

bool IsLocalhost(const std::string& name) {
  return name == "localhost" || (name.size() > 10 && name.compare(name.size() - 10, 10, ".localhost") == 0);
}

std::string Dotted(uint32_t a) { return IpAddress::V4(a).ToString(); }

}  // namespace

struct Egress::Attempt {
  uint64_t id;
  bool tcp;
  uint16_t port;
  std::string name;  // empty: the guest dialled an address
  std::vector<IpAddress> candidates;
  bool fromHosts = false;
  std::vector<IpAddress> allowed;
  std::string reason;  // of the first allowed address, or of the refusal
  size_t next = 0;
  enum class Stage { Resolving, Asking, Connecting, Finished } stage = Stage::Resolving;
  int64_t deadline = -1;
  Fd socket;
  bool connected = false;
  Done done;
};

Egress::Egress(NetworkConfig config, Emit emit)
    : policy_(std::move(config)), emit_(std::move(emit)), synthetic_(kSyntheticBase, kSyntheticCount) {
  policy_.SetHostAddresses(HostAddresses());
  hostAddressesAt_ = NowMs();
}

Egress::~Egress() = default;

uint64_t Egress::Start(bool tcp, uint32_t dstIp, uint16_t port, Done done) {
  auto owned = std::make_unique<Attempt>();
  Attempt& a = *owned;
  a.id = nextId_++;
  a.tcp = tcp;
  a.port = port;
  a.done = std::move(done);
  attempts_[a.id] = std::move(owned);
  if (attempts_.size() > kMaxAttempts) {
    Finish(a, false, "too many connections are being set up at once");
  } else if ((dstIp & kOwnBlockMask) == kOwnBlock) {
    const std::string* name = synthetic_.NameOf(dstIp);
    if (!name) {
      Finish(a, false,
             dstIp == kGatewayIp ? "the gateway serves only DNS (UDP port 53)"
                                 : Dotted(dstIp) + " is not an address the guest's DNS gave out");
    } else {
      a.name = *name;
      if (const std::vector<IpAddress>* mapped = policy_.HostsEntry(a.name)) {
        a.candidates = *mapped;
        a.fromHosts = true;
        Decide(a);
      } else {
        const uint64_t id = a.id;
        WithAddresses(a.name, [this, id] {
          auto it = attempts_.find(id);
          if (it == attempts_.end()) return;
          it->second->candidates = names_[it->second->name].addresses;
          Decide(*it->second);
        });
      }
    }
  } else {
    a.candidates = {IpAddress::V4(dstIp)};
    Decide(a);
  }
  return a.id;
}

void Egress::Cancel(uint64_t id) { attempts_.erase(id); }

void Egress::Decide(Attempt& a) {
  std::string refusal;
  for (const IpAddress& ip : a.candidates) {
    const net::Verdict v = policy_.Decide(a.name, ip, a.port, a.fromHosts);
    if (v.allowed) {
      if (a.allowed.empty()) a.reason = v.reason;
      a.allowed.push_back(ip);
    } else if (refusal.empty()) {
      refusal = v.reason;
    }
  }
  if (a.allowed.empty()) return Finish(a, false, a.candidates.empty() ? "the name does not resolve" : refusal);
  if (!policy_.askHost()) return Connect(a);
  a.stage = Attempt::Stage::Asking;
  a.deadline = NowMs() + kVerdictTimeoutMs;
  nlohmann::json ev = {{"event", "connect-request"}, {"id", a.id},     {"protocol", a.tcp ? "tcp" : "udp"},
                       {"ip", a.allowed[0].ToString()}, {"port", a.port}};
  if (!a.name.empty()) ev["host"] = a.name;
  emit_(ev);
}

void Egress::Verdict(uint64_t id, bool allowed) {
  auto it = attempts_.find(id);
  if (it == attempts_.end() || it->second->stage != Attempt::Stage::Asking) return;
  if (allowed) Connect(*it->second);
  else Finish(*it->second, false, "onConnect refused it");
}

void Egress::Connect(Attempt& a) {
  std::string error;
  while (a.next < a.allowed.size()) {
    const IpAddress& ip = a.allowed[a.next++];
    sockaddr_storage addr;
    const socklen_t len = ip.ToSockaddr(a.port, addr);
    a.socket = Fd(socket(addr.ss_family, (a.tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!a.socket.valid()) {
      error = strerror(errno);
      continue;
    }
    if (connect(a.socket.get(), reinterpret_cast<sockaddr*>(&addr), len) == 0) return Finish(a, true, a.reason);
    if (errno == EINPROGRESS) {
      a.stage = Attempt::Stage::Connecting;
      a.deadline = NowMs() + kConnectTimeoutMs;
      return;
    }
    error = strerror(errno);
    a.socket.reset();
  }
  Finish(a, false, a.reason, error);
}

void Egress::OnConnected(Attempt& a) {
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(a.socket.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
  if (err == 0) return Finish(a, true, a.reason);
  a.socket.reset();
  if (a.next < a.allowed.size()) return Connect(a);
  Finish(a, false, a.reason, strerror(err));
}

void Egress::Finish(Attempt& a, bool connected, const std::string& reason, const std::string& error) {
  a.stage = Attempt::Stage::Finished;
  a.connected = connected;
  a.deadline = 0;  // `done` runs from OnTimers, outside the caller's stack
  if (!connected) a.socket.reset();
  const IpAddress* ip = !a.allowed.empty() ? &a.allowed[a.next ? a.next - 1 : 0]
                        : !a.candidates.empty() ? &a.candidates[0] : nullptr;
  nlohmann::json ev = {{"event", "connection"}, {"protocol", a.tcp ? "tcp" : "udp"}, {"port", a.port},
                       {"allowed", connected || !error.empty()}, {"reason", reason}};
  ev["host"] = a.name.empty() ? nlohmann::json(nullptr) : nlohmann::json(a.name);
  ev["ip"] = ip ? ip->ToString() : "";
  if (!error.empty()) ev["error"] = error;
  emit_(ev);
}

void Egress::WithAddresses(const std::string& name, std::function<void()> then) {
  NameInfo& info = names_[name];
  if (info.expires > NowMs()) return then();
  if (waitingCount_ >= kMaxWaiting) {
    info.addresses.clear();  // too much at once: treat as not found, for now
    return then();
  }
  waitingCount_++;
  info.waiting.push_back(std::move(then));
  resolver_.Lookup(name);
}

void Egress::OnResolved() {
  const int64_t now = NowMs();
  for (Resolver::Result& r : resolver_.TakeResults()) {
    NameInfo& info = names_[r.name];
    info.addresses = std::move(r.addresses);
    info.expires = now + (info.addresses.empty() ? kMissingNameTtlMs : kNameTtlMs);
    std::vector<std::function<void()>> waiting;
    waiting.swap(info.waiting);
    waitingCount_ -= waiting.size();
    for (auto& then : waiting) then();
  }
  // Forget names that expired, so a guest asking for many cannot grow the table.
  if (names_.size() > kMaxNames)
    for (auto it = names_.begin(); it != names_.end();)
      it = it->second.expires < now && it->second.waiting.empty() ? names_.erase(it) : std::next(it);
}

void Egress::Query(const std::string& name, uint16_t qtype, Answer answer) {
  const bool wantsA = qtype == kDnsTypeA || qtype == kDnsTypeAny;
  if (IsLocalhost(name)) return answer(kDnsNoError, wantsA ? std::vector<uint32_t>{0x7f000001} : std::vector<uint32_t>{});
  if (!IsHostName(name) || !policy_.NameMayConnect(name)) return answer(kDnsNxDomain, {});
  auto reply = [this, name, wantsA, answer](bool exists) {
    if (!exists) return answer(kDnsNxDomain, {});
    answer(kDnsNoError, wantsA ? std::vector<uint32_t>{synthetic_.AddressFor(name)} : std::vector<uint32_t>{});
  };
  if (policy_.HostsEntry(name)) return reply(true);
  WithAddresses(name, [this, name, reply] { reply(!names_[name].addresses.empty()); });
}

void Egress::AddPollFds(PollSet& ps) {
  ps.Add(resolver_.fd(), POLLIN, [this](short) { OnResolved(); });
  for (auto& [id, a] : attempts_) {
    if (a->stage != Attempt::Stage::Connecting) continue;
    Attempt* attempt = a.get();
    ps.Add(a->socket.get(), POLLOUT, [this, attempt](short) {
      if (attempt->stage == Attempt::Stage::Connecting) OnConnected(*attempt);
    });
  }
}

int64_t Egress::Deadline() const {
  int64_t next = hostAddressesAt_ + kHostAddressesRefreshMs;
  for (const auto& [id, a] : attempts_)
    if (a->deadline >= 0 && a->deadline < next) next = a->deadline;
  return next;
}

void Egress::OnTimers(int64_t now) {
  if (now >= hostAddressesAt_ + kHostAddressesRefreshMs) {
    policy_.SetHostAddresses(HostAddresses());
    hostAddressesAt_ = now;
  }
  std::vector<uint64_t> finished;
  for (auto& [id, a] : attempts_) {
    if (a->deadline < 0 || now < a->deadline) continue;
    if (a->stage == Attempt::Stage::Asking) Finish(*a, false, "onConnect did not answer within 10 s");
    else if (a->stage == Attempt::Stage::Connecting) Finish(*a, false, a->reason, "connection timed out");
    if (a->stage == Attempt::Stage::Finished) finished.push_back(id);
  }
  for (uint64_t id : finished) {
    auto it = attempts_.find(id);
    if (it == attempts_.end()) continue;
    std::unique_ptr<Attempt> a = std::move(it->second);
    attempts_.erase(it);
    a->done(a->connected ? std::move(a->socket) : Fd());
  }
}

}  // namespace krunbox::net
