// Ethernet, ARP, IPv4, TCP and UDP as the guest's virtio-net device sends
// them: parsed into bounded views (the guest is hostile: every length is
// checked against the frame) and built back with correct checksums (the
// guest gets no checksum offload, so it verifies every one).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace krunbox::net {

using Mac = std::array<uint8_t, 6>;

constexpr size_t kEthHeader = 14;
constexpr size_t kIpHeader = 20;   // we never send IP options
constexpr size_t kTcpHeader = 20;  // plus options on SYN-ACK only
constexpr size_t kUdpHeader = 8;
constexpr uint16_t kEtherIpv4 = 0x0800, kEtherArp = 0x0806;
constexpr uint8_t kProtoIcmp = 1, kProtoTcp = 6, kProtoUdp = 17;

namespace tcpflag {
constexpr uint8_t FIN = 0x01, SYN = 0x02, RST = 0x04, PSH = 0x08, ACK = 0x10;
}

struct ArpRequest {
  Mac senderMac;
  uint32_t senderIp, targetIp;  // host order
};

struct Ipv4Packet {
  uint32_t src, dst;  // host order
  uint8_t proto;
  const uint8_t* header;  // the IP header, for ICMP errors that quote it
  size_t headerLen;
  const uint8_t* payload;
  size_t payloadLen;
};

struct TcpSegment {
  uint16_t srcPort, dstPort;
  uint32_t seq, ack;
  uint8_t flags;
  uint16_t window;
  std::optional<uint16_t> mss;     // SYN options
  std::optional<uint8_t> wscale;
  const uint8_t* data;
  size_t dataLen;
};

struct UdpDatagram {
  uint16_t srcPort, dstPort;
  const uint8_t* data;
  size_t dataLen;
};

struct EthFrame {
  Mac dst, src;
  uint16_t type;
  const uint8_t* payload;
  size_t payloadLen;
};

std::optional<EthFrame> ParseEthernet(const uint8_t* frame, size_t len);
std::optional<ArpRequest> ParseArpRequest(const uint8_t* p, size_t len);
// Fragments and malformed headers are nullopt (the guest's MTU never
// needs fragments towards us).
std::optional<Ipv4Packet> ParseIpv4(const uint8_t* p, size_t len);
std::optional<TcpSegment> ParseTcp(const Ipv4Packet& ip);
std::optional<UdpDatagram> ParseUdp(const Ipv4Packet& ip);

// Frames from the gateway (`src`) to the guest (`dst`).
struct Endpoints {
  Mac gatewayMac, guestMac;
};

std::string BuildArpReply(const Endpoints& e, const ArpRequest& req);

struct TcpOut {
  uint32_t src, dst;  // host order
  uint16_t srcPort, dstPort;
  uint32_t seq, ack;
  uint8_t flags;
  uint16_t window;
  std::optional<uint16_t> mss;  // SYN-ACK options
  std::optional<uint8_t> wscale;
};
std::string BuildTcp(const Endpoints& e, const TcpOut& t, const uint8_t* data, size_t len);

std::string BuildUdp(const Endpoints& e, uint32_t src, uint16_t srcPort, uint32_t dst, uint16_t dstPort,
                     const uint8_t* data, size_t len);

// ICMP destination unreachable (code 3: port unreachable, 13: administratively
// prohibited) quoting the offending packet's header and first 8 bytes.
std::string BuildIcmpUnreachable(const Endpoints& e, uint32_t src, const Ipv4Packet& offending, uint8_t code);

// The Internet checksum of `len` bytes, continuing from `sum`.
uint32_t ChecksumAdd(uint32_t sum, const uint8_t* p, size_t len);
uint16_t ChecksumFinish(uint32_t sum);

}  // namespace krunbox::net
