// IP addresses, prefixes and host names as the network policy sees them,
// and the address ranges that are never reachable unless a rule names them.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace krunbox {

// An IPv4 or IPv6 address. IPv4 addresses are kept as IPv4-mapped IPv6
// (::ffff:a.b.c.d), so that one comparison covers both forms.
class IpAddress {
 public:
  IpAddress() = default;
  static IpAddress V4(uint32_t hostOrder);
  static IpAddress V6(const uint8_t bytes[16]);
  // "192.0.2.1", "2001:db8::1", "::ffff:192.0.2.1"; nullopt if neither.
  static std::optional<IpAddress> Parse(const std::string& text);
  static std::optional<IpAddress> FromSockaddr(const sockaddr* sa);

  bool IsV4() const;
  uint32_t V4Value() const;  // host order; only when IsV4()
  const std::array<uint8_t, 16>& Bytes() const { return bytes_; }
  std::string ToString() const;
  // A sockaddr_in or sockaddr_in6 for connect(); returns its length.
  socklen_t ToSockaddr(uint16_t port, sockaddr_storage& out) const;

  bool operator==(const IpAddress& o) const { return bytes_ == o.bytes_; }
  bool operator!=(const IpAddress& o) const { return bytes_ != o.bytes_; }
  bool operator<(const IpAddress& o) const { return bytes_ < o.bytes_; }

 private:
  std::array<uint8_t, 16> bytes_{};
};

// An address prefix: "203.0.113.0/24", "2001:db8::/32", or one address.
class Cidr {
 public:
  Cidr() = default;
  Cidr(const IpAddress& base, unsigned prefixLen);  // prefixLen counts IPv4 bits for IPv4
  // "a.b.c.d/n", "v6/n" or a bare address (all bits); nullopt if malformed.
  static std::optional<Cidr> Parse(const std::string& text);

  bool Contains(const IpAddress& a) const;
  // Every address of `inner` is in this prefix.
  bool Covers(const Cidr& inner) const;
  std::string ToString() const;

 private:
  IpAddress base_;
  unsigned bits_ = 0;  // over the 128-bit (mapped) form
};

// Why an address may not be reached by default: loopback, private,
// link-local (cloud metadata lives there), shared/CGNAT, reserved,
// documentation, multicast, ... `block` is the whole range, so that a rule
// naming part of it can be told apart from a rule that merely spans it.
struct SpecialRange {
  Cidr block;
  const char* kind;  // "loopback", "private", "link-local", ...
};

// nullopt for an ordinary (public) address. IPv6 forms that embed an IPv4
// address (IPv4-mapped, IPv4-compatible, NAT64, 6to4) are judged by the
// IPv4 address they carry.
std::optional<SpecialRange> ClassifyAddress(const IpAddress& a);
// The same, with the host's own addresses special too ("the host's own
// address"): reaching them reaches the host's services.
std::optional<SpecialRange> ClassifyAddress(const IpAddress& a, const std::vector<IpAddress>& hostAddresses);

// The host's addresses, from getifaddrs().
std::vector<IpAddress> HostAddresses();

// A host name as DNS and the policy accept it: letters, digits, '-' and '_'
// in labels of 1-63 bytes, at most 253 bytes in all.
bool IsHostName(const std::string& name);

}  // namespace krunbox
