#include "runner/net/stack.h"

#include <sys/socket.h>

#include <vector>

#include "runner/net/guest_network.h"

namespace krunbox::net {
namespace {

constexpr size_t kMaxTcpFlows = 512;
constexpr size_t kMaxUdpFlows = 256;
constexpr size_t kMaxQueuedDatagrams = 8;
constexpr int64_t kUdpIdleMs = 60000, kUdpRefusedMs = 10000;
constexpr uint8_t kIcmpPortUnreachable = 3, kIcmpProhibited = 13;
const Endpoints kEndpoints{kGatewayMac, kGuestMac};

}  // namespace

NetStack::NetStack(NetworkConfig config, Egress::Emit emit) : egress_(std::move(config), std::move(emit)) {}

NetStack::~NetStack() = default;

void NetStack::AttachGuest(Fd link) {
  DropLink();
  graveyard_.Clear();
  link_ = std::make_unique<GuestLink>(std::move(link));
  linkGeneration_++;
}

void NetStack::DropLink() {
  for (auto& [key, id] : tcpAttempts_) egress_.Cancel(id);
  tcpAttempts_.clear();
  for (auto& [key, flow] : tcp_) {
    flow->Abandon();
    graveyard_.tcp.push_back(std::move(flow));
  }
  tcp_.clear();
  for (auto& [key, flow] : udp_)
    if (flow.attempt) egress_.Cancel(flow.attempt);
  graveyard_.udp.push_back(std::move(udp_));
  udp_.clear();
  if (link_) graveyard_.link = std::move(link_);
}

void NetStack::AddPollFds(PollSet& ps) {
  if (link_) {
    ps.Add(link_->fd(), static_cast<short>(POLLIN | (link_->WantsWrite() ? POLLOUT : 0)), [this](short ev) {
      if ((ev & POLLOUT) && !link_->Flush()) return DropLink();
      if (ev & (POLLIN | POLLHUP | POLLERR)) OnLinkReadable();
    });
  }
  egress_.AddPollFds(ps);
  for (auto& [key, flow] : tcp_) flow->AddPollFds(ps);
  for (auto& [key, flow] : udp_) {
    if (!flow.socket.valid() || !link_ || link_->Congested()) continue;
    UdpFlow* f = &flow;
    const FlowKey k = key;
    ps.Add(flow.socket.get(), POLLIN, [this, k, f](short) { OnUdpHost(k, *f); });
  }
}

int64_t NetStack::Deadline() const {
  int64_t next = egress_.Deadline();
  for (const auto& [key, flow] : tcp_)
    if (flow->Deadline() >= 0 && flow->Deadline() < next) next = flow->Deadline();
  if (!udp_.empty()) next = std::min(next, NowMs() + kUdpRefusedMs);
  return next;
}

void NetStack::AfterRound(int64_t now) {
  egress_.OnTimers(now);
  for (auto& [key, flow] : tcp_) flow->OnTimer(now);
  if (link_) {
    if (!link_->Congested())
      for (auto& [key, flow] : tcp_) flow->Flush();
    if (!link_->Flush()) DropLink();
  }
  for (auto it = tcp_.begin(); it != tcp_.end();) it = it->second->Done() ? tcp_.erase(it) : std::next(it);
  for (auto it = udp_.begin(); it != udp_.end();) {
    const int64_t idle = it->second.refused ? kUdpRefusedMs : kUdpIdleMs;
    it = !it->second.attempt && now - it->second.lastUsed > idle ? udp_.erase(it) : std::next(it);
  }
  graveyard_.Clear();
}

void NetStack::OnLinkReadable() {
  if (!link_->Read([this](const uint8_t* frame, size_t len) { OnFrame(frame, len); })) DropLink();
}

void NetStack::OnFrame(const uint8_t* frame, size_t len) {
  const std::optional<EthFrame> eth = ParseEthernet(frame, len);
  if (!eth) return;
  if (eth->type == kEtherArp) {
    // Every address is the gateway's, except the guest's own (duplicate
    // address probes ask for that one).
    const std::optional<ArpRequest> req = ParseArpRequest(eth->payload, eth->payloadLen);
    if (req && req->targetIp != kGuestIp && req->senderIp == kGuestIp) link_->Send(BuildArpReply(kEndpoints, *req));
    return;
  }
  if (eth->type != kEtherIpv4) return;  // IPv6 and everything else go nowhere
  const std::optional<Ipv4Packet> ip = ParseIpv4(eth->payload, eth->payloadLen);
  if (!ip || ip->src != kGuestIp) return;
  if (ip->proto == kProtoTcp) {
    if (const std::optional<TcpSegment> s = ParseTcp(*ip)) OnTcp(*ip, *s);
  } else if (ip->proto == kProtoUdp) {
    if (const std::optional<UdpDatagram> u = ParseUdp(*ip)) OnUdp(*ip, *u);
  }
}

void NetStack::RefuseUnknown(const Ipv4Packet& ip, const TcpSegment& s) {
  if (s.flags & tcpflag::RST) return;
  TcpOut t{ip.dst, ip.src, s.dstPort, s.srcPort, 0, 0, tcpflag::RST, 0, std::nullopt, std::nullopt};
  if (s.flags & tcpflag::ACK) {
    t.seq = s.ack;
  } else {
    t.flags |= tcpflag::ACK;
    t.ack = s.seq + static_cast<uint32_t>(s.dataLen) + ((s.flags & tcpflag::SYN) ? 1 : 0) + ((s.flags & tcpflag::FIN) ? 1 : 0);
  }
  link_->Send(BuildTcp(kEndpoints, t, nullptr, 0));
}

void NetStack::OnTcp(const Ipv4Packet& ip, const TcpSegment& s) {
  const FlowKey key{ip.src, ip.dst, s.srcPort, s.dstPort};
  const bool syn = (s.flags & tcpflag::SYN) && !(s.flags & tcpflag::ACK);
  if (auto it = tcp_.find(key); it != tcp_.end()) {
    // A SYN with a new sequence number reuses the port for a new connection.
    if (!(syn && it->second->SynSeq() != s.seq) && !it->second->Done()) return it->second->OnSegment(s);
    it->second->Abandon();
    graveyard_.tcp.push_back(std::move(it->second));
    tcp_.erase(it);
    if (auto a = tcpAttempts_.find(key); a != tcpAttempts_.end()) {
      egress_.Cancel(a->second);
      tcpAttempts_.erase(a);
    }
  }
  if (!syn || tcp_.size() >= kMaxTcpFlows) return RefuseUnknown(ip, s);
  tcp_[key] = std::make_unique<TcpFlow>(key, s, *link_);
  tcpAttempts_[key] = egress_.Start(true, ip.dst, s.dstPort, [this, key](Fd socket) {
    tcpAttempts_.erase(key);
    auto it = tcp_.find(key);
    if (it == tcp_.end() || !it->second->Pending()) return;
    if (socket.valid()) it->second->Open(std::move(socket));
    else it->second->Refuse();
  });
}

void NetStack::OnUdp(const Ipv4Packet& ip, const UdpDatagram& u) {
  const FlowKey key{ip.src, ip.dst, u.srcPort, u.dstPort};
  if (ip.dst == kGatewayIp) {
    if (u.dstPort == 53) return OnDns(key, u);
    return link_->Send(BuildIcmpUnreachable(kEndpoints, kGatewayIp, ip, kIcmpPortUnreachable));
  }
  auto it = udp_.find(key);
  if (it == udp_.end()) {
    if (udp_.size() >= kMaxUdpFlows) return link_->Send(BuildIcmpUnreachable(kEndpoints, ip.dst, ip, kIcmpProhibited));
    it = udp_.emplace(key, UdpFlow{}).first;
  }
  UdpFlow& flow = it->second;
  flow.lastUsed = NowMs();
  if (flow.refused) return link_->Send(BuildIcmpUnreachable(kEndpoints, ip.dst, ip, kIcmpProhibited));
  if (flow.socket.valid()) {
    send(flow.socket.get(), u.data, u.dataLen, MSG_DONTWAIT | MSG_NOSIGNAL);
    return;
  }
  if (flow.queued.size() < kMaxQueuedDatagrams) flow.queued.emplace_back(reinterpret_cast<const char*>(u.data), u.dataLen);
  if (flow.attempt) return;
  flow.attempt = egress_.Start(false, ip.dst, u.dstPort, [this, key](Fd socket) {
    auto it = udp_.find(key);
    if (it == udp_.end()) return;
    UdpFlow& f = it->second;
    f.attempt = 0;
    f.refused = !socket.valid();
    f.socket = std::move(socket);
    for (const std::string& d : f.queued)
      if (f.socket.valid()) send(f.socket.get(), d.data(), d.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    f.queued.clear();
  });
}

void NetStack::OnUdpHost(const FlowKey& key, UdpFlow& flow) {
  static thread_local char buf[65536];
  const ssize_t n = recv(flow.socket.get(), buf, sizeof buf, MSG_DONTWAIT);
  if (n < 0 || !link_) return;
  flow.lastUsed = NowMs();
  // A datagram the guest's MTU cannot carry whole is dropped, as a router would.
  if (static_cast<size_t>(n) + kIpHeader + kUdpHeader > kGuestMtu) return;
  link_->Send(BuildUdp(kEndpoints, key.dstIp, key.dstPort, key.guestIp, key.guestPort,
                       reinterpret_cast<const uint8_t*>(buf), static_cast<size_t>(n)));
}

void NetStack::OnDns(const FlowKey& key, const UdpDatagram& u) {
  const std::optional<DnsQuery> q = ParseDnsQuery(u.data, u.dataLen);
  if (!q) return;
  const std::string msg(reinterpret_cast<const char*>(u.data), u.dataLen);
  auto answer = [this, key, msg, query = *q, generation = linkGeneration_](uint8_t rcode,
                                                                        const std::vector<uint32_t>& addresses) {
    if (!link_ || linkGeneration_ != generation) return;  // a new boot: nobody asked this one
    const std::string r =
        BuildDnsResponse(reinterpret_cast<const uint8_t*>(msg.data()), query, rcode, addresses, kSyntheticTtlSeconds);
    link_->Send(BuildUdp(kEndpoints, kGatewayIp, 53, key.guestIp, key.guestPort,
                         reinterpret_cast<const uint8_t*>(r.data()), r.size()));
  };
  if (q->qclass != 1) return answer(kDnsNotImp, {});
  egress_.Query(q->name, q->qtype, answer);
}

}  // namespace krunbox::net
