#include "runner/net/tcp_flow.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/random.h>
#include <sys/socket.h>

#include <algorithm>

#include "runner/net/guest_network.h"

namespace krunbox::net {
namespace {

constexpr int kInitialRtoMs = 1000, kMaxRtoMs = 8000;
// A guest that acknowledges nothing for this long is gone.
constexpr int64_t kGiveUpMs = 120000;
constexpr uint8_t kOurScale = 3;  // 65535 << 3 covers kRecvBuffer
constexpr uint16_t kOurMss = kGuestMtu - kIpHeader - kTcpHeader;

}  // namespace

TcpFlow::TcpFlow(const FlowKey& key, const TcpSegment& syn, GuestLink& link)
    : key_(key), link_(link), irs_(syn.seq), rcvNxt_(syn.seq + 1), rtoMs_(kInitialRtoMs) {
  if (getrandom(&iss_, sizeof iss_, 0) != sizeof iss_) iss_ = static_cast<uint32_t>(NowMs() * 2654435761u);
  sndUna_ = sndNxt_ = iss_;
  guestMss_ = std::min<uint16_t>(std::max<uint16_t>(syn.mss.value_or(536), 64), kOurMss);
  guestWindow_ = syn.window;  // never scaled in a SYN
  if (syn.wscale) {
    guestScale_ = *syn.wscale;
    ourScale_ = kOurScale;
  }
}

void TcpFlow::Send(uint8_t flags, uint32_t seq, const uint8_t* data, size_t len) {
  const bool syn = flags & tcpflag::SYN;
  const uint32_t window = std::min<uint32_t>(FreeWindow() >> (syn ? 0 : ourScale_), 65535);
  lastWindow_ = window << (syn ? 0 : ourScale_);
  TcpOut t{key_.dstIp, key_.guestIp, key_.dstPort, key_.guestPort, seq, rcvNxt_, flags,
           static_cast<uint16_t>(window), std::nullopt, std::nullopt};
  if (syn) {
    t.mss = kOurMss;
    if (ourScale_) t.wscale = ourScale_;
  }
  link_.Send(BuildTcp({kGatewayMac, kGuestMac}, t, data, len));
}

void TcpFlow::Open(Fd host) {
  host_ = std::move(host);
  SetNonBlocking(host_.get());
  const int one = 1;
  setsockopt(host_.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  state_ = State::SynAckSent;
  Send(tcpflag::SYN | tcpflag::ACK, iss_, nullptr, 0);
  sndNxt_ = iss_ + 1;
  lastProgress_ = NowMs();
  deadline_ = lastProgress_ + kGiveUpMs / 4;  // the handshake's own limit
}

void TcpFlow::Refuse() {
  TcpOut t{key_.dstIp, key_.guestIp, key_.dstPort, key_.guestPort, 0, irs_ + 1, tcpflag::RST | tcpflag::ACK, 0,
           std::nullopt, std::nullopt};
  link_.Send(BuildTcp({kGatewayMac, kGuestMac}, t, nullptr, 0));
  state_ = State::Done;
}

void TcpFlow::Reset() {
  if (state_ == State::Pending) return Refuse();
  Send(tcpflag::RST | tcpflag::ACK, sndNxt_, nullptr, 0);
  host_.reset();
  state_ = State::Done;
}

void TcpFlow::OnSegment(const TcpSegment& s) {
  if (state_ == State::Done) return;
  if (s.flags & tcpflag::RST) {
    if (host_.valid()) {  // pass the abort on
      const linger now{1, 0};
      setsockopt(host_.get(), SOL_SOCKET, SO_LINGER, &now, sizeof now);
    }
    host_.reset();
    state_ = State::Done;
    return;
  }
  if (state_ == State::Pending) return;  // the guest repeats its SYN while we decide
  if (s.flags & tcpflag::SYN) {
    if (state_ == State::SynAckSent && s.seq == irs_) Send(tcpflag::SYN | tcpflag::ACK, iss_, nullptr, 0);
    else SendAck();
    return;
  }
  if (!(s.flags & tcpflag::ACK)) return;
  const int64_t now = NowMs();
  if (state_ == State::SynAckSent) {
    if (s.ack != iss_ + 1) return;
    state_ = State::Open;
    sndUna_ = s.ack;
    deadline_ = -1;
  }
  lastProgress_ = now;
  const uint32_t acked = s.ack - sndUna_;
  if (acked > 0 && acked <= sndNxt_ - sndUna_) {
    unacked_.erase(0, std::min<size_t>(acked, unacked_.size()));
    sndUna_ = s.ack;
    rtoMs_ = kInitialRtoMs;
    deadline_ = -1;
  }
  guestWindow_ = static_cast<uint32_t>(s.window) << guestScale_;

  if (s.dataLen || (s.flags & tcpflag::FIN)) {
    const uint8_t* data = s.data;
    size_t len = s.dataLen;
    const int32_t behind = static_cast<int32_t>(rcvNxt_ - s.seq);
    if (behind < 0 || static_cast<size_t>(behind) > len || guestFin_) {
      SendAck();  // a gap, or all of it seen before: say where we are
    } else {
      data += behind;
      len -= static_cast<size_t>(behind);
      const size_t take = std::min<size_t>(len, FreeWindow());
      toHost_.append(reinterpret_cast<const char*>(data), take);
      rcvNxt_ += static_cast<uint32_t>(take);
      if ((s.flags & tcpflag::FIN) && take == len) {
        guestFin_ = true;
        rcvNxt_++;
      }
      SendAck();
    }
  }
  WriteHost();
  Flush();
  CheckFinished();
}

void TcpFlow::Flush() {
  if (state_ != State::Open) return;
  while (!link_.Congested()) {
    const uint32_t inFlight = sndNxt_ - sndUna_;
    const size_t sent = std::min<size_t>(inFlight, unacked_.size());
    const size_t unsent = unacked_.size() - sent;
    const uint32_t room = guestWindow_ > inFlight ? guestWindow_ - inFlight : 0;
    const size_t n = std::min<size_t>({unsent, guestMss_, room});
    if (n == 0) break;
    const uint8_t flags = tcpflag::ACK | (n == unsent ? tcpflag::PSH : 0);
    Send(flags, sndNxt_, reinterpret_cast<const uint8_t*>(unacked_.data()) + sent, n);
    sndNxt_ += static_cast<uint32_t>(n);
  }
  if (hostEof_ && !finSent_ && sndNxt_ - sndUna_ == unacked_.size()) {
    Send(tcpflag::FIN | tcpflag::ACK, sndNxt_, nullptr, 0);
    sndNxt_++;
    finSent_ = true;
  }
  Arm(NowMs());
}

void TcpFlow::Arm(int64_t now) {
  if (state_ != State::Open) return;
  const bool inFlight = sndNxt_ != sndUna_;
  const bool waiting = unacked_.size() > sndNxt_ - sndUna_ || (hostEof_ && !finSent_);
  if (!inFlight && !(waiting && guestWindow_ == 0)) deadline_ = -1;
  else if (deadline_ < 0) deadline_ = now + rtoMs_;
}

void TcpFlow::OnTimer(int64_t now) {
  if (deadline_ < 0 || now < deadline_ || state_ == State::Done) return;
  if (state_ != State::Open || now - lastProgress_ > kGiveUpMs) return Reset();
  if (sndNxt_ != sndUna_) {
    // Go back N: everything from the first unacknowledged byte (and the FIN) again.
    sndNxt_ = sndUna_;
    finSent_ = false;
  } else {
    // A zero window: an old sequence number makes the guest answer with its window.
    Send(tcpflag::ACK, sndUna_ - 1, nullptr, 0);
  }
  rtoMs_ = std::min(rtoMs_ * 2, kMaxRtoMs);
  deadline_ = -1;
  Flush();
  Arm(now);
}

void TcpFlow::AddPollFds(PollSet& ps) {
  if (!host_.valid() || state_ == State::Done || state_ == State::Pending) return;
  short events = 0;
  if (!hostEof_ && unacked_.size() < kSendBuffer && !link_.Congested()) events |= POLLIN;
  if (!toHost_.empty()) events |= POLLOUT;
  if (events) ps.Add(host_.get(), events, [this](short revents) { OnHostEvents(revents); });
}

void TcpFlow::OnHostEvents(short revents) {
  if (state_ == State::Done) return;
  if (revents & POLLOUT) WriteHost();
  if (state_ != State::Done && (revents & (POLLIN | POLLHUP | POLLERR)) && !hostEof_) {
    static thread_local char buf[256 * 1024];
    const size_t room = std::min(sizeof buf, kSendBuffer - unacked_.size());
    const ssize_t n = recv(host_.get(), buf, room, MSG_DONTWAIT);
    if (n > 0) unacked_.append(buf, static_cast<size_t>(n));
    else if (n == 0) hostEof_ = true;
    else if (errno != EAGAIN && errno != EINTR) return Reset();
  }
  Flush();
  CheckFinished();
}

void TcpFlow::WriteHost() {
  if (!host_.valid()) return;
  while (!toHost_.empty()) {
    const ssize_t n = send(host_.get(), toHost_.data(), toHost_.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) break;
      return Reset();
    }
    toHost_.erase(0, static_cast<size_t>(n));
  }
  if (toHost_.empty() && guestFin_ && !hostShut_) {
    shutdown(host_.get(), SHUT_WR);
    hostShut_ = true;
  }
  // Tell the guest its window opened again once it is worth a segment.
  if (state_ == State::Open && !guestFin_ && FreeWindow() >= lastWindow_ + kRecvBuffer / 4) SendAck();
}

void TcpFlow::CheckFinished() {
  if (state_ == State::Open && guestFin_ && hostShut_ && finSent_ && sndUna_ == sndNxt_) {
    host_.reset();
    state_ = State::Done;
  }
}

}  // namespace krunbox::net
