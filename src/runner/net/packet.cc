#include "runner/net/packet.h"

#include <string.h>

namespace krunbox::net {
namespace {

uint16_t Get16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
uint32_t Get32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) << 24 | static_cast<uint32_t>(p[1]) << 16 | static_cast<uint32_t>(p[2]) << 8 | p[3];
}
void Put16(std::string& s, size_t at, uint16_t v) {
  s[at] = static_cast<char>(v >> 8);
  s[at + 1] = static_cast<char>(v);
}
void Put32(std::string& s, size_t at, uint32_t v) {
  for (int i = 0; i < 4; i++) s[at + i] = static_cast<char>(v >> (24 - 8 * i));
}
uint8_t* Bytes(std::string& s) { return reinterpret_cast<uint8_t*>(s.data()); }

// Ethernet + IPv4 header for `payloadLen` bytes of `proto`; the caller
// fills the payload at kEthHeader + kIpHeader.
std::string IpFrame(const Endpoints& e, uint32_t src, uint32_t dst, uint8_t proto, size_t payloadLen) {
  std::string f(kEthHeader + kIpHeader + payloadLen, '\0');
  memcpy(&f[0], e.guestMac.data(), 6);
  memcpy(&f[6], e.gatewayMac.data(), 6);
  Put16(f, 12, kEtherIpv4);
  const size_t ip = kEthHeader;
  f[ip] = 0x45;
  Put16(f, ip + 2, static_cast<uint16_t>(kIpHeader + payloadLen));
  Put16(f, ip + 6, 0x4000);  // don't fragment
  f[ip + 8] = 64;
  f[ip + 9] = static_cast<char>(proto);
  Put32(f, ip + 12, src);
  Put32(f, ip + 16, dst);
  Put16(f, ip + 10, ChecksumFinish(ChecksumAdd(0, Bytes(f) + ip, kIpHeader)));
  return f;
}

uint32_t PseudoHeaderSum(uint32_t src, uint32_t dst, uint8_t proto, size_t len) {
  return (src >> 16) + (src & 0xffff) + (dst >> 16) + (dst & 0xffff) + proto + static_cast<uint32_t>(len);
}

}  // namespace

uint32_t ChecksumAdd(uint32_t sum, const uint8_t* p, size_t len) {
  uint64_t s = sum;
  size_t i = 0;
  for (; i + 1 < len; i += 2) s += static_cast<uint32_t>(p[i] << 8 | p[i + 1]);
  if (i < len) s += static_cast<uint32_t>(p[i] << 8);
  while (s >> 32) s = (s & 0xffffffff) + (s >> 32);
  return static_cast<uint32_t>((s & 0xffff) + (s >> 16));
}

uint16_t ChecksumFinish(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

std::optional<EthFrame> ParseEthernet(const uint8_t* frame, size_t len) {
  if (len < kEthHeader) return std::nullopt;
  EthFrame f;
  memcpy(f.dst.data(), frame, 6);
  memcpy(f.src.data(), frame + 6, 6);
  f.type = Get16(frame + 12);
  f.payload = frame + kEthHeader;
  f.payloadLen = len - kEthHeader;
  return f;
}

std::optional<ArpRequest> ParseArpRequest(const uint8_t* p, size_t len) {
  // Ethernet/IPv4 ARP, opcode 1 (request).
  if (len < 28 || Get16(p) != 1 || Get16(p + 2) != kEtherIpv4 || p[4] != 6 || p[5] != 4 || Get16(p + 6) != 1)
    return std::nullopt;
  ArpRequest r;
  memcpy(r.senderMac.data(), p + 8, 6);
  r.senderIp = Get32(p + 14);
  r.targetIp = Get32(p + 24);
  return r;
}

std::optional<Ipv4Packet> ParseIpv4(const uint8_t* p, size_t len) {
  if (len < kIpHeader || (p[0] >> 4) != 4) return std::nullopt;
  const size_t ihl = static_cast<size_t>(p[0] & 0x0f) * 4;
  const size_t total = Get16(p + 2);
  if (ihl < kIpHeader || total < ihl || total > len) return std::nullopt;
  const uint16_t frag = Get16(p + 6);
  if ((frag & 0x2000) || (frag & 0x1fff)) return std::nullopt;  // more-fragments or an offset
  Ipv4Packet ip;
  ip.src = Get32(p + 12);
  ip.dst = Get32(p + 16);
  ip.proto = p[9];
  ip.header = p;
  ip.headerLen = ihl;
  ip.payload = p + ihl;
  ip.payloadLen = total - ihl;
  return ip;
}

std::optional<TcpSegment> ParseTcp(const Ipv4Packet& ip) {
  const uint8_t* p = ip.payload;
  if (ip.proto != kProtoTcp || ip.payloadLen < kTcpHeader) return std::nullopt;
  const size_t off = static_cast<size_t>(p[12] >> 4) * 4;
  if (off < kTcpHeader || off > ip.payloadLen) return std::nullopt;
  TcpSegment s;
  s.srcPort = Get16(p);
  s.dstPort = Get16(p + 2);
  s.seq = Get32(p + 4);
  s.ack = Get32(p + 8);
  s.flags = p[13];
  s.window = Get16(p + 14);
  s.data = p + off;
  s.dataLen = ip.payloadLen - off;
  for (size_t i = kTcpHeader; i < off;) {
    const uint8_t kind = p[i];
    if (kind == 0) break;
    if (kind == 1) {
      i++;
      continue;
    }
    if (i + 1 >= off || p[i + 1] < 2 || i + p[i + 1] > off) break;
    const uint8_t olen = p[i + 1];
    if (kind == 2 && olen == 4) s.mss = Get16(p + i + 2);
    if (kind == 3 && olen == 3) s.wscale = p[i + 2] > 14 ? 14 : p[i + 2];
    i += olen;
  }
  return s;
}

std::optional<UdpDatagram> ParseUdp(const Ipv4Packet& ip) {
  const uint8_t* p = ip.payload;
  if (ip.proto != kProtoUdp || ip.payloadLen < kUdpHeader) return std::nullopt;
  const size_t len = Get16(p + 4);
  if (len < kUdpHeader || len > ip.payloadLen) return std::nullopt;
  return UdpDatagram{Get16(p), Get16(p + 2), p + kUdpHeader, len - kUdpHeader};
}

std::string BuildArpReply(const Endpoints& e, const ArpRequest& req) {
  std::string f(kEthHeader + 28, '\0');
  memcpy(&f[0], req.senderMac.data(), 6);
  memcpy(&f[6], e.gatewayMac.data(), 6);
  Put16(f, 12, kEtherArp);
  const size_t a = kEthHeader;
  Put16(f, a, 1);
  Put16(f, a + 2, kEtherIpv4);
  f[a + 4] = 6;
  f[a + 5] = 4;
  Put16(f, a + 6, 2);  // reply
  memcpy(&f[a + 8], e.gatewayMac.data(), 6);
  Put32(f, a + 14, req.targetIp);
  memcpy(&f[a + 18], req.senderMac.data(), 6);
  Put32(f, a + 24, req.senderIp);
  return f;
}

std::string BuildTcp(const Endpoints& e, const TcpOut& t, const uint8_t* data, size_t len) {
  const size_t optLen = (t.mss ? 4 : 0) + (t.wscale ? 4 : 0);
  const size_t hdr = kTcpHeader + optLen;
  std::string f = IpFrame(e, t.src, t.dst, kProtoTcp, hdr + len);
  const size_t at = kEthHeader + kIpHeader;
  Put16(f, at, t.srcPort);
  Put16(f, at + 2, t.dstPort);
  Put32(f, at + 4, t.seq);
  Put32(f, at + 8, t.ack);
  f[at + 12] = static_cast<char>((hdr / 4) << 4);
  f[at + 13] = static_cast<char>(t.flags);
  Put16(f, at + 14, t.window);
  size_t o = at + kTcpHeader;
  if (t.mss) {
    f[o] = 2, f[o + 1] = 4;
    Put16(f, o + 2, *t.mss);
    o += 4;
  }
  if (t.wscale) {
    f[o] = 1, f[o + 1] = 3, f[o + 2] = 3;  // NOP, window scale
    f[o + 3] = static_cast<char>(*t.wscale);
  }
  if (len) memcpy(&f[at + hdr], data, len);
  const uint32_t sum = ChecksumAdd(PseudoHeaderSum(t.src, t.dst, kProtoTcp, hdr + len), Bytes(f) + at, hdr + len);
  Put16(f, at + 16, ChecksumFinish(sum));
  return f;
}

std::string BuildUdp(const Endpoints& e, uint32_t src, uint16_t srcPort, uint32_t dst, uint16_t dstPort,
                     const uint8_t* data, size_t len) {
  std::string f = IpFrame(e, src, dst, kProtoUdp, kUdpHeader + len);
  const size_t at = kEthHeader + kIpHeader;
  Put16(f, at, srcPort);
  Put16(f, at + 2, dstPort);
  Put16(f, at + 4, static_cast<uint16_t>(kUdpHeader + len));
  if (len) memcpy(&f[at + kUdpHeader], data, len);
  uint16_t sum = ChecksumFinish(ChecksumAdd(PseudoHeaderSum(src, dst, kProtoUdp, kUdpHeader + len), Bytes(f) + at,
                                            kUdpHeader + len));
  Put16(f, at + 6, sum == 0 ? 0xffff : sum);
  return f;
}

std::string BuildIcmpUnreachable(const Endpoints& e, uint32_t src, const Ipv4Packet& offending, uint8_t code) {
  const size_t quoted = offending.headerLen + (offending.payloadLen < 8 ? offending.payloadLen : 8);
  std::string f = IpFrame(e, src, offending.src, kProtoIcmp, 8 + quoted);
  const size_t at = kEthHeader + kIpHeader;
  f[at] = 3;  // destination unreachable
  f[at + 1] = static_cast<char>(code);
  memcpy(&f[at + 8], offending.header, quoted);
  Put16(f, at + 2, ChecksumFinish(ChecksumAdd(0, Bytes(f) + at, 8 + quoted)));
  return f;
}

}  // namespace krunbox::net
