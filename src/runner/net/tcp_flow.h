// One guest TCP connection, terminated at the gateway and carried on to
// its destination by a host socket. The guest's SYN is answered only once
// the host connection is up (or refused with a RST at once), so a denied
// connection fails fast in the guest. The link to the guest is lossless
// and in order, so the guest side needs no reassembly: out-of-order data is
// dropped and re-ACKed; what the guest has not acknowledged is resent from
// the first unacknowledged byte when a timer runs out (go-back-N), and a
// zero window is probed. Both directions are bounded: the guest's window
// and our buffers stop reading from the side that is ahead.
#pragma once

#include <cstdint>
#include <string>
#include <tuple>

#include "common/posix.h"
#include "runner/net/link.h"
#include "runner/net/packet.h"
#include "runner/net/poll_set.h"

namespace krunbox::net {

struct FlowKey {
  uint32_t guestIp, dstIp;
  uint16_t guestPort, dstPort;
  bool operator<(const FlowKey& o) const {
    return std::tie(guestIp, guestPort, dstIp, dstPort) < std::tie(o.guestIp, o.guestPort, o.dstIp, o.dstPort);
  }
};

class TcpFlow {
 public:
  TcpFlow(const FlowKey& key, const TcpSegment& syn, GuestLink& link);

  // The host connection is up: answer the guest's SYN.
  void Open(Fd host);
  // Refuse the guest's SYN (ECONNREFUSED in the guest, at once).
  void Refuse();
  // Ends the flow without a word to the guest (its link is gone).
  void Abandon() {
    host_.reset();
    state_ = State::Done;
  }
  void OnSegment(const TcpSegment& s);
  void AddPollFds(PollSet& ps);
  int64_t Deadline() const { return deadline_; }
  void OnTimer(int64_t now);
  bool Done() const { return state_ == State::Done; }
  bool Pending() const { return state_ == State::Pending; }
  uint32_t SynSeq() const { return irs_; }
  // The link could take frames again: send what the window allows.
  void Flush();

 private:
  enum class State { Pending, SynAckSent, Open, Done };
  static constexpr size_t kRecvBuffer = 256 * 1024;  // guest -> host, not yet written
  static constexpr size_t kSendBuffer = 1 << 20;     // host -> guest, not yet acknowledged

  void Send(uint8_t flags, uint32_t seq, const uint8_t* data, size_t len);
  void SendAck() { Send(tcpflag::ACK, sndNxt_, nullptr, 0); }
  void Reset();  // RST to the guest, close the host side
  void OnHostEvents(short revents);
  void WriteHost();
  uint32_t FreeWindow() const { return static_cast<uint32_t>(kRecvBuffer - toHost_.size()); }
  void Arm(int64_t now);
  void CheckFinished();

  FlowKey key_;
  GuestLink& link_;
  State state_ = State::Pending;
  Fd host_;
  // guest -> host
  uint32_t irs_, rcvNxt_;
  std::string toHost_;
  bool guestFin_ = false, hostShut_ = false;
  uint32_t lastWindow_ = 0;  // the window we last advertised, in bytes
  // host -> guest
  uint32_t iss_, sndUna_, sndNxt_;
  std::string unacked_;  // from sndUna_: sent and not yet sent bytes
  bool hostEof_ = false, finSent_ = false;
  uint32_t guestWindow_ = 0;
  uint16_t guestMss_;
  uint8_t guestScale_ = 0, ourScale_ = 0;
  int64_t deadline_ = -1;  // retransmission or window probe
  int64_t lastProgress_ = 0;
  int rtoMs_;
};

}  // namespace krunbox::net
