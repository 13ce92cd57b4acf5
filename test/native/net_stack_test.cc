// The network stack at packet level: a fake guest on one end of a socket
// pair sends Ethernet frames and reads the answers, while test servers on
// 127.0.0.1 (the only destinations tests may use) stand for the outside.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "runner/net/dns.h"
#include "runner/net/guest_network.h"
#include "runner/net/packet.h"
#include "runner/net/stack.h"
#include "net_rule.h"

using namespace krunbox;
using namespace krunbox::net;

namespace {

const Endpoints kFromGuest{kGuestMac, kGatewayMac};  // builders address the "guest" side: swap

uint16_t Get16(const std::string& s, size_t at) {
  return static_cast<uint16_t>(static_cast<uint8_t>(s[at]) << 8 | static_cast<uint8_t>(s[at + 1]));
}

// A listening socket on 127.0.0.1 and an ephemeral port.
struct TestServer {
  Fd listen;
  uint16_t port = 0;
  TestServer() : listen(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(bind(listen.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(listen.get(), 8) == 0);
    socklen_t len = sizeof a;
    getsockname(listen.get(), reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
    SetNonBlocking(listen.get());
  }
};

struct Harness {
  NetStack stack;
  Fd guest;
  std::vector<nlohmann::json> events;
  std::string in;

  explicit Harness(NetworkConfig c) : stack(std::move(c), [this](const nlohmann::json& e) { events.push_back(e); }) {
    int sv[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    guest = Fd(sv[0]);
    SetNonBlocking(guest.get());
    stack.AttachGuest(Fd(sv[1]));
  }

  void Round(int maxWaitMs) {
    PollSet ps;
    stack.AddPollFds(ps);
    const int64_t deadline = std::min(stack.Deadline(), NowMs() + maxWaitMs);
    ps.Run(deadline);
    stack.AfterRound(NowMs());
  }

  void SendFrame(const std::string& f) {
    const uint32_t n = htonl(static_cast<uint32_t>(f.size()));
    std::string out(reinterpret_cast<const char*>(&n), 4);
    out += f;
    REQUIRE(WriteAll(guest.get(), out));
  }

  // The next frame from the stack, pumping it meanwhile; "" on timeout.
  std::string NextFrame(int timeoutMs = 3000) {
    const int64_t end = NowMs() + timeoutMs;
    for (;;) {
      char buf[65536];
      ssize_t n;
      while ((n = read(guest.get(), buf, sizeof buf)) > 0) in.append(buf, static_cast<size_t>(n));
      if (in.size() >= 4) {
        const uint32_t len = ntohl(*reinterpret_cast<const uint32_t*>(in.data()));
        if (in.size() >= 4 + len) {
          std::string f = in.substr(4, len);
          in.erase(0, 4 + len);
          return f;
        }
      }
      if (NowMs() > end) return "";
      Round(5);
    }
  }

  // The next TCP segment to the guest (skipping other frames).
  std::optional<TcpSegment> NextTcp(std::string& keep, int timeoutMs = 3000) {
    const int64_t end = NowMs() + timeoutMs;
    while (NowMs() <= end) {
      keep = NextFrame(static_cast<int>(end - NowMs()));
      if (keep.empty()) return std::nullopt;
      auto eth = ParseEthernet(reinterpret_cast<const uint8_t*>(keep.data()), keep.size());
      if (!eth || eth->type != kEtherIpv4) continue;
      auto ip = ParseIpv4(eth->payload, eth->payloadLen);
      if (!ip) continue;
      if (auto s = ParseTcp(*ip)) return s;
    }
    return std::nullopt;
  }

  void SendTcp(uint32_t dst, uint16_t sport, uint16_t dport, uint32_t seq, uint32_t ack, uint8_t flags,
               const std::string& data = "", uint16_t window = 65535) {
    TcpOut t{kGuestIp, dst, sport, dport, seq, ack, flags, window, std::nullopt, std::nullopt};
    if (flags & tcpflag::SYN) {
      t.mss = 65480;
      t.wscale = 7;
    }
    SendFrame(BuildTcp(kFromGuest, t, reinterpret_cast<const uint8_t*>(data.data()), data.size()));
  }

  // Asks the gateway's DNS for `name`; returns the answer's rcode and A records.
  std::pair<int, std::vector<uint32_t>> Resolve(const std::string& name, uint16_t qtype = kDnsTypeA) {
    std::string q = std::string("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00", 12);
    size_t start = 0;
    while (start <= name.size()) {
      size_t dot = name.find('.', start);
      if (dot == std::string::npos) dot = name.size();
      q.push_back(static_cast<char>(dot - start));
      q += name.substr(start, dot - start);
      start = dot + 1;
    }
    q.push_back(0);
    q += std::string("\x00", 1) + static_cast<char>(qtype) + std::string("\x00\x01", 2);
    SendFrame(BuildUdp(kFromGuest, kGuestIp, 40000, kGatewayIp, 53, reinterpret_cast<const uint8_t*>(q.data()), q.size()));
    for (;;) {
      const std::string f = NextFrame(5000);
      REQUIRE(!f.empty());
      auto eth = ParseEthernet(reinterpret_cast<const uint8_t*>(f.data()), f.size());
      auto ip = ParseIpv4(eth->payload, eth->payloadLen);
      auto u = ip ? ParseUdp(*ip) : std::nullopt;
      if (!u || u->srcPort != 53) continue;
      const std::string r(reinterpret_cast<const char*>(u->data), u->dataLen);
      CHECK(Get16(r, 0) == 0x1234);
      const int rcode = Get16(r, 2) & 0xf;
      std::vector<uint32_t> out;
      for (size_t i = 0, at = q.size(); i < Get16(r, 6); i++, at += 16)
        out.push_back(static_cast<uint32_t>(Get16(r, at + 12)) << 16 | Get16(r, at + 14));
      return {rcode, out};
    }
  }
};

bool ValidChecksums(const std::string& f) {
  auto eth = ParseEthernet(reinterpret_cast<const uint8_t*>(f.data()), f.size());
  auto ip = ParseIpv4(eth->payload, eth->payloadLen);
  if (!ip || ChecksumFinish(ChecksumAdd(0, ip->header, ip->headerLen)) != 0) return false;
  uint32_t pseudo = (ip->src >> 16) + (ip->src & 0xffff) + (ip->dst >> 16) + (ip->dst & 0xffff) + ip->proto +
                    static_cast<uint32_t>(ip->payloadLen);
  return ChecksumFinish(ChecksumAdd(pseudo, ip->payload, ip->payloadLen)) == 0;
}

}  // namespace

TEST_CASE("packets: built frames parse back with valid checksums") {
  TcpOut t{kGatewayIp, kGuestIp, 80, 5000, 1000, 2000, tcpflag::SYN | tcpflag::ACK, 4096, uint16_t(1460), uint8_t(7)};
  const std::string f = BuildTcp({kGatewayMac, kGuestMac}, t, reinterpret_cast<const uint8_t*>("abc"), 3);
  CHECK(ValidChecksums(f));
  auto eth = ParseEthernet(reinterpret_cast<const uint8_t*>(f.data()), f.size());
  auto s = ParseTcp(*ParseIpv4(eth->payload, eth->payloadLen));
  REQUIRE(s);
  CHECK(s->seq == 1000);
  CHECK(s->ack == 2000);
  CHECK(*s->mss == 1460);
  CHECK(*s->wscale == 7);
  CHECK(std::string(reinterpret_cast<const char*>(s->data), s->dataLen) == "abc");
  const std::string u = BuildUdp({kGatewayMac, kGuestMac}, kGatewayIp, 53, kGuestIp, 999, reinterpret_cast<const uint8_t*>("hello"), 5);
  CHECK(ValidChecksums(u));
}

TEST_CASE("packets: hostile lengths are refused") {
  uint8_t ip[40] = {0x45, 0, 0, 200};  // total length past the buffer
  CHECK_FALSE(ParseIpv4(ip, sizeof ip));
  uint8_t frag[20] = {0x45, 0, 0, 20, 0, 0, 0x20, 0};  // more fragments
  CHECK_FALSE(ParseIpv4(frag, sizeof frag));
  uint8_t tcp[40] = {0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6};
  tcp[20 + 12] = 0xf0;  // data offset 60 > segment
  CHECK_FALSE(ParseTcp(*ParseIpv4(tcp, sizeof tcp)));
  // DNS: a compression pointer in the question, a label past the end.
  const uint8_t ptr[] = {0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0, 1, 0, 1};
  CHECK_FALSE(ParseDnsQuery(ptr, sizeof ptr));
  const uint8_t longLabel[] = {0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 40, 'a', 'b'};
  CHECK_FALSE(ParseDnsQuery(longLabel, sizeof longLabel));
}

TEST_CASE("stack: ARP, DNS and an allowed TCP connection to a host server") {
  TestServer server;
  NetworkConfig c;
  c.allow = {Rule(NetRule::Kind::Name, "svc.test", server.port)};
  c.hosts["svc.test"] = {*IpAddress::Parse("127.0.0.1")};
  Harness h(c);

  ArpRequest req{kGuestMac, kGuestIp, kGatewayIp};
  std::string arp = BuildArpReply({kGatewayMac, kGuestMac}, req);  // same layout; make it a request
  arp[kEthHeader + 7] = 1;
  memcpy(&arp[kEthHeader + 8], kGuestMac.data(), 6);
  const uint32_t sip = htonl(kGuestIp), tip = htonl(kGatewayIp);
  memcpy(&arp[kEthHeader + 14], &sip, 4);
  memcpy(&arp[kEthHeader + 24], &tip, 4);
  h.SendFrame(arp);
  const std::string reply = h.NextFrame();
  REQUIRE(reply.size() >= kEthHeader + 28);
  CHECK(Get16(reply, kEthHeader + 6) == 2);
  CHECK(memcmp(&reply[kEthHeader + 8], kGatewayMac.data(), 6) == 0);

  auto [rcode, addresses] = h.Resolve("SVC.test");
  CHECK(rcode == kDnsNoError);
  REQUIRE(addresses.size() == 1);
  const uint32_t synthetic = addresses[0];
  CHECK((synthetic & kOwnBlockMask) == kOwnBlock);
  CHECK(h.Resolve("svc.test").second == addresses);  // one address per name
  CHECK(h.Resolve("svc.test", 28).first == kDnsNoError);  // AAAA: no records, no error
  CHECK(h.Resolve("svc.test", 28).second.empty());
  CHECK(h.Resolve("other.test").first == kDnsNxDomain);
  CHECK(h.Resolve("localhost").second == std::vector<uint32_t>{0x7f000001});

  h.SendTcp(synthetic, 5555, server.port, 100, 0, tcpflag::SYN);
  std::string keep;
  auto synAck = h.NextTcp(keep);
  REQUIRE(synAck);
  CHECK(synAck->flags == (tcpflag::SYN | tcpflag::ACK));
  CHECK(synAck->ack == 101);
  CHECK(ValidChecksums(keep));
  Fd conn(accept4(server.listen.get(), nullptr, nullptr, SOCK_CLOEXEC));
  REQUIRE(conn.valid());
  REQUIRE(h.events.size() == 1);
  CHECK(h.events[0]["event"] == "connection");
  CHECK(h.events[0]["host"] == "svc.test");
  CHECK(h.events[0]["ip"] == "127.0.0.1");
  CHECK(h.events[0]["allowed"] == true);

  const uint32_t iss = synAck->seq;
  h.SendTcp(synthetic, 5555, server.port, 101, iss + 1, tcpflag::ACK, "ping");
  auto ack = h.NextTcp(keep);
  REQUIRE(ack);
  CHECK(ack->ack == 105);
  char buf[16] = {0};
  for (int i = 0; i < 100 && recv(conn.get(), buf, sizeof buf, MSG_DONTWAIT) <= 0; i++) h.Round(10);
  CHECK(std::string(buf) == "ping");

  // 2 MiB from the server: the stack keeps within the guest's window and
  // our acknowledgements move it along.
  std::string big(2 << 20, 'x');
  for (size_t i = 0; i < big.size(); i++) big[i] = static_cast<char>('a' + i % 26);
  size_t written = 0;
  std::string got;
  uint32_t next = iss + 1;
  while (got.size() < big.size()) {
    if (written < big.size()) {
      const ssize_t n = send(conn.get(), big.data() + written, big.size() - written, MSG_DONTWAIT);
      if (n > 0) written += static_cast<size_t>(n);
    }
    auto s = h.NextTcp(keep);
    REQUIRE(s);
    REQUIRE(s->seq == next);
    CHECK(s->dataLen <= 65480);
    got.append(reinterpret_cast<const char*>(s->data), s->dataLen);
    next += static_cast<uint32_t>(s->dataLen);
    h.SendTcp(synthetic, 5555, server.port, 105, next, tcpflag::ACK, "", 2048);  // window 2048 << 7
  }
  CHECK(got == big);

  // The server closes: FIN reaches the guest; the guest closes too.
  conn.reset();
  auto fin = h.NextTcp(keep);
  REQUIRE(fin);
  CHECK((fin->flags & tcpflag::FIN));
  h.SendTcp(synthetic, 5555, server.port, 105, next + 1, tcpflag::ACK | tcpflag::FIN);
  auto last = h.NextTcp(keep);
  REQUIRE(last);
  CHECK(last->ack == 106);
}

TEST_CASE("stack: denied connections are refused at once, with the reason") {
  TestServer server;
  NetworkConfig c;
  c.allow = {Rule(NetRule::Kind::Any, "*"), Rule(NetRule::Kind::Name, "svc.test", server.port)};
  c.hosts["svc.test"] = {*IpAddress::Parse("127.0.0.1")};
  Harness h(c);
  std::string keep;

  // "*" never reaches the host's loopback, dialled directly...
  int64_t start = NowMs();
  h.SendTcp(0x7f000001, 6000, server.port, 1, 0, tcpflag::SYN);
  auto rst = h.NextTcp(keep);
  REQUIRE(rst);
  CHECK((rst->flags & tcpflag::RST));
  CHECK(rst->ack == 2);
  CHECK(NowMs() - start < 1000);
  REQUIRE(h.events.size() == 1);
  CHECK(h.events[0]["allowed"] == false);
  CHECK(h.events[0]["ip"] == "127.0.0.1");
  CHECK(h.events[0]["reason"].get<std::string>().find("loopback") != std::string::npos);

  // ...on another port of an allowed name...
  const uint32_t synthetic = h.Resolve("svc.test").second.at(0);
  h.SendTcp(synthetic, 6001, server.port + 1, 1, 0, tcpflag::SYN);
  rst = h.NextTcp(keep);
  REQUIRE(rst);
  CHECK((rst->flags & tcpflag::RST));
  // ...through the gateway, or an address DNS never gave out.
  h.SendTcp(kGatewayIp, 6002, 80, 1, 0, tcpflag::SYN);
  CHECK((h.NextTcp(keep)->flags & tcpflag::RST));
  h.SendTcp(kSyntheticBase + 999, 6003, 80, 1, 0, tcpflag::SYN);
  CHECK((h.NextTcp(keep)->flags & tcpflag::RST));
  REQUIRE(h.events.size() == 4);
  CHECK(h.events[2]["reason"] == "the gateway serves only DNS (UDP port 53)");
  // Nothing reached the server.
  CHECK(accept4(server.listen.get(), nullptr, nullptr, SOCK_CLOEXEC) < 0);

  // IPv6 and segments of unknown connections go nowhere (the latter get a RST).
  std::string v6(kEthHeader + 40, '\0');
  v6[12] = static_cast<char>(0x86), v6[13] = static_cast<char>(0xdd);
  h.SendFrame(v6);
  h.SendTcp(0x7f000001, 6004, server.port, 1, 1, tcpflag::ACK, "data");
  auto r = h.NextTcp(keep);
  REQUIRE(r);
  CHECK(r->flags == tcpflag::RST);
  CHECK(r->seq == 1);
  CHECK(h.events.size() == 4);
}

TEST_CASE("stack: the host program's verdict (onConnect)") {
  TestServer server;
  NetworkConfig c;
  c.allow = {Rule(NetRule::Kind::Cidr, "127.0.0.1")};
  c.askHost = true;
  Harness h(c);
  std::string keep;
  h.SendTcp(0x7f000001, 7000, server.port, 1, 0, tcpflag::SYN);
  for (int i = 0; i < 50 && h.events.empty(); i++) h.Round(10);
  REQUIRE(h.events.size() == 1);
  CHECK(h.events[0]["event"] == "connect-request");
  CHECK(h.events[0]["port"] == server.port);
  h.stack.Verdict(h.events[0]["id"].get<uint64_t>(), false);
  auto rst = h.NextTcp(keep);
  REQUIRE(rst);
  CHECK((rst->flags & tcpflag::RST));
  CHECK(h.events.back()["reason"] == "onConnect refused it");

  h.SendTcp(0x7f000001, 7001, server.port, 1, 0, tcpflag::SYN);
  for (int i = 0; i < 50 && h.events.size() < 3; i++) h.Round(10);
  h.stack.Verdict(h.events.back()["id"].get<uint64_t>(), true);
  auto synAck = h.NextTcp(keep);
  REQUIRE(synAck);
  CHECK(synAck->flags == (tcpflag::SYN | tcpflag::ACK));
}

TEST_CASE("stack: data the guest did not acknowledge is sent again") {
  TestServer server;
  NetworkConfig c;
  c.allow = {Rule(NetRule::Kind::Cidr, "127.0.0.1")};
  Harness h(c);
  std::string keep;
  h.SendTcp(0x7f000001, 7100, server.port, 1, 0, tcpflag::SYN);
  auto synAck = h.NextTcp(keep);
  REQUIRE(synAck);
  h.SendTcp(0x7f000001, 7100, server.port, 2, synAck->seq + 1, tcpflag::ACK);
  Fd conn(accept4(server.listen.get(), nullptr, nullptr, SOCK_CLOEXEC));
  REQUIRE(WriteAll(conn.get(), "lost"));
  auto first = h.NextTcp(keep);
  while (first && first->dataLen == 0) first = h.NextTcp(keep);  // a window update
  REQUIRE(first);
  CHECK(first->dataLen == 4);
  // No ACK: after the retransmission timeout, the same bytes again.
  auto again = h.NextTcp(keep, 3000);
  REQUIRE(again);
  CHECK(again->seq == first->seq);
  CHECK(std::string(reinterpret_cast<const char*>(again->data), again->dataLen) == "lost");
}

TEST_CASE("stack: UDP flows go only where the policy allows, and replies come back") {
  Fd server(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(bind(server.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  socklen_t len = sizeof a;
  getsockname(server.get(), reinterpret_cast<sockaddr*>(&a), &len);
  const uint16_t port = ntohs(a.sin_port);
  SetNonBlocking(server.get());

  NetworkConfig c;
  c.allow = {Rule(NetRule::Kind::Cidr, "127.0.0.1", port)};
  Harness h(c);
  auto sendUdp = [&](uint16_t dport, const std::string& data) {
    h.SendFrame(BuildUdp(kFromGuest, kGuestIp, 33000, 0x7f000001, dport, reinterpret_cast<const uint8_t*>(data.data()), data.size()));
  };
  sendUdp(port, "hello");
  char buf[64] = {0};
  sockaddr_in from{};
  socklen_t fromLen = sizeof from;
  ssize_t n = -1;
  for (int i = 0; i < 200 && n < 0; i++) {
    h.Round(10);
    n = recvfrom(server.get(), buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &fromLen);
  }
  REQUIRE(n == 5);
  CHECK(std::string(buf, 5) == "hello");
  REQUIRE(sendto(server.get(), "back", 4, 0, reinterpret_cast<sockaddr*>(&from), fromLen) == 4);
  const std::string f = h.NextFrame();
  REQUIRE(!f.empty());
  CHECK(ValidChecksums(f));
  auto eth = ParseEthernet(reinterpret_cast<const uint8_t*>(f.data()), f.size());
  auto ip = ParseIpv4(eth->payload, eth->payloadLen);
  auto u = ParseUdp(*ip);
  REQUIRE(u);
  CHECK(ip->src == 0x7f000001);
  CHECK(u->srcPort == port);
  CHECK(u->dstPort == 33000);
  CHECK(std::string(reinterpret_cast<const char*>(u->data), u->dataLen) == "back");
  CHECK(h.events.at(0)["protocol"] == "udp");
  CHECK(h.events.at(0)["allowed"] == true);

  // Another port: refused; the next datagram of the flow gets an ICMP error.
  sendUdp(port + 1, "x");
  for (int i = 0; i < 50 && h.events.size() < 2; i++) h.Round(10);
  REQUIRE(h.events.size() == 2);
  CHECK(h.events[1]["allowed"] == false);
  sendUdp(port + 1, "y");
  const std::string icmp = h.NextFrame();
  REQUIRE(icmp.size() > kEthHeader + kIpHeader);
  CHECK(static_cast<uint8_t>(icmp[kEthHeader + 9]) == kProtoIcmp);
  CHECK(static_cast<uint8_t>(icmp[kEthHeader + kIpHeader]) == 3);  // destination unreachable
}
