// The guest's whole network: a small user-mode stack at the other end of
// its virtio-net link. It answers ARP for every address (the gateway is the
// guest's only neighbour), serves DNS at the gateway, and terminates every
// TCP connection and UDP flow the guest opens, carrying each on through a
// host socket only after Egress allowed it. Nothing else leaves: IPv6,
// ICMP, fragments and other protocols are dropped here, whatever routes or
// raw sockets the guest sets up.
#pragma once

#include <deque>
#include <map>
#include <memory>
#include <vector>

#include "runner/net/egress.h"
#include "runner/net/link.h"
#include "runner/net/tcp_flow.h"

namespace krunbox::net {

class NetStack {
 public:
  NetStack(NetworkConfig config, Egress::Emit emit);
  ~NetStack();

  // The VMM's end of the guest link. A new link (a new boot) replaces the
  // old one, and every flow of the old one ends.
  void AttachGuest(Fd link);
  void Verdict(uint64_t id, bool allowed) { egress_.Verdict(id, allowed); }

  void AddPollFds(PollSet& ps);
  int64_t Deadline() const;
  // Timers, and removal of what ended during the round.
  void AfterRound(int64_t now);

 private:
  struct UdpFlow {
    Fd socket;             // invalid while deciding, or when refused
    uint64_t attempt = 0;  // while deciding
    bool refused = false;
    std::deque<std::string> queued;  // datagrams sent while deciding (a few)
    int64_t lastUsed = 0;
  };

  void OnLinkReadable();
  void OnFrame(const uint8_t* frame, size_t len);
  void OnTcp(const Ipv4Packet& ip, const TcpSegment& s);
  void OnUdp(const Ipv4Packet& ip, const UdpDatagram& u);
  void OnDns(const FlowKey& key, const UdpDatagram& u);
  void OnUdpHost(const FlowKey& key, UdpFlow& flow);
  void RefuseUnknown(const Ipv4Packet& ip, const TcpSegment& s);
  void DropLink();

  // What ended during a poll round, kept until the round is over: other
  // handlers of the round may still point at it.
  struct Graveyard {
    std::vector<std::unique_ptr<TcpFlow>> tcp;
    std::vector<std::map<FlowKey, UdpFlow>> udp;
    std::unique_ptr<GuestLink> link;
    void Clear() {
      tcp.clear();
      udp.clear();
      link.reset();
    }
  };

  Egress egress_;
  std::unique_ptr<GuestLink> link_;
  uint64_t linkGeneration_ = 0;
  Graveyard graveyard_;
  std::map<FlowKey, std::unique_ptr<TcpFlow>> tcp_;
  std::map<FlowKey, uint64_t> tcpAttempts_;
  std::map<FlowKey, UdpFlow> udp_;
};

}  // namespace krunbox::net
