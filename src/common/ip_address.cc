#include "common/ip_address.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <string.h>

#include <vector>

namespace krunbox {
namespace {

constexpr uint8_t kMappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

std::optional<unsigned> ParsePrefixLen(const std::string& s, unsigned max) {
  if (s.empty() || s.size() > 3) return std::nullopt;
  unsigned n = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + static_cast<unsigned>(c - '0');
  }
  if (n > max || (s.size() > 1 && s[0] == '0')) return std::nullopt;
  return n;
}

struct Range {
  Cidr block;
  const char* kind;
};

Cidr Must(const char* text) { return *Cidr::Parse(text); }

const std::vector<Range>& V4Ranges() {
  static const std::vector<Range> ranges = {
      {Must("0.0.0.0/8"), "this-network"},  // 0.0.0.0 reaches the host itself
      {Must("10.0.0.0/8"), "private"},
      {Must("100.64.0.0/10"), "shared (CGNAT)"},
      {Must("127.0.0.0/8"), "loopback"},
      {Must("169.254.0.0/16"), "link-local"},  // cloud metadata (169.254.169.254)
      {Must("172.16.0.0/12"), "private"},
      {Must("192.0.0.0/24"), "reserved"},
      {Must("192.0.2.0/24"), "documentation"},
      {Must("192.88.99.0/24"), "reserved"},
      {Must("192.168.0.0/16"), "private"},
      {Must("198.18.0.0/15"), "benchmarking"},  // krunbox's guest network lives here
      {Must("198.51.100.0/24"), "documentation"},
      {Must("203.0.113.0/24"), "documentation"},
      {Must("224.0.0.0/4"), "multicast"},
      {Must("240.0.0.0/4"), "reserved"},  // and 255.255.255.255
  };
  return ranges;
}

const std::vector<Range>& V6Ranges() {
  static const std::vector<Range> ranges = {
      {Must("::/128"), "unspecified"},
      {Must("::1/128"), "loopback"},
      {Must("::/96"), "reserved"},  // IPv4-compatible (deprecated)
      {Must("64:ff9b:1::/48"), "private"},  // local-use NAT64
      {Must("100::/64"), "reserved"},
      {Must("2001::/23"), "reserved"},
      {Must("2001:db8::/32"), "documentation"},
      {Must("3fff::/20"), "documentation"},
      {Must("fc00::/7"), "private"},
      {Must("fe80::/10"), "link-local"},
      {Must("fec0::/10"), "private"},  // site-local (deprecated)
      {Must("ff00::/8"), "multicast"},
  };
  return ranges;
}

// IPv6 forms that carry an IPv4 address a translator or relay would reach.
struct Embedding {
  Cidr block;
  unsigned offset;  // byte offset of the IPv4 address
};

const std::vector<Embedding>& Embeddings() {
  static const std::vector<Embedding> forms = {
      {Must("64:ff9b::/96"), 12},  // NAT64
      {Must("2002::/16"), 2},      // 6to4
  };
  return forms;
}

}  // namespace

IpAddress IpAddress::V4(uint32_t hostOrder) {
  IpAddress a;
  memcpy(a.bytes_.data(), kMappedPrefix, 12);
  a.bytes_[12] = static_cast<uint8_t>(hostOrder >> 24);
  a.bytes_[13] = static_cast<uint8_t>(hostOrder >> 16);
  a.bytes_[14] = static_cast<uint8_t>(hostOrder >> 8);
  a.bytes_[15] = static_cast<uint8_t>(hostOrder);
  return a;
}

IpAddress IpAddress::V6(const uint8_t bytes[16]) {
  IpAddress a;
  memcpy(a.bytes_.data(), bytes, 16);
  return a;
}

std::optional<IpAddress> IpAddress::Parse(const std::string& text) {
  if (text.find('\0') != std::string::npos) return std::nullopt;
  in_addr v4;
  if (inet_pton(AF_INET, text.c_str(), &v4) == 1) return V4(ntohl(v4.s_addr));
  in6_addr v6;
  if (inet_pton(AF_INET6, text.c_str(), &v6) == 1) return V6(v6.s6_addr);
  return std::nullopt;
}

std::optional<IpAddress> IpAddress::FromSockaddr(const sockaddr* sa) {
  if (!sa) return std::nullopt;
  if (sa->sa_family == AF_INET) return V4(ntohl(reinterpret_cast<const sockaddr_in*>(sa)->sin_addr.s_addr));
  if (sa->sa_family == AF_INET6) return V6(reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr.s6_addr);
  return std::nullopt;
}

bool IpAddress::IsV4() const { return memcmp(bytes_.data(), kMappedPrefix, 12) == 0; }

uint32_t IpAddress::V4Value() const {
  return static_cast<uint32_t>(bytes_[12]) << 24 | static_cast<uint32_t>(bytes_[13]) << 16 |
         static_cast<uint32_t>(bytes_[14]) << 8 | bytes_[15];
}

std::string IpAddress::ToString() const {
  char buf[INET6_ADDRSTRLEN];
  if (IsV4()) {
    in_addr v4{htonl(V4Value())};
    inet_ntop(AF_INET, &v4, buf, sizeof buf);
  } else {
    in6_addr v6;
    memcpy(v6.s6_addr, bytes_.data(), 16);
    inet_ntop(AF_INET6, &v6, buf, sizeof buf);
  }
  return buf;
}

socklen_t IpAddress::ToSockaddr(uint16_t port, sockaddr_storage& out) const {
  memset(&out, 0, sizeof out);
  if (IsV4()) {
    auto* in = reinterpret_cast<sockaddr_in*>(&out);
    in->sin_family = AF_INET;
    in->sin_port = htons(port);
    in->sin_addr.s_addr = htonl(V4Value());
    return sizeof *in;
  }
  auto* in6 = reinterpret_cast<sockaddr_in6*>(&out);
  in6->sin6_family = AF_INET6;
  in6->sin6_port = htons(port);
  memcpy(in6->sin6_addr.s6_addr, bytes_.data(), 16);
  return sizeof *in6;
}

Cidr::Cidr(const IpAddress& base, unsigned prefixLen) : bits_(base.IsV4() ? 96 + prefixLen : prefixLen) {
  std::array<uint8_t, 16> b = base.Bytes();
  for (unsigned i = 0; i < 16; i++) {
    const unsigned keep = bits_ >= (i + 1) * 8 ? 8 : bits_ > i * 8 ? bits_ - i * 8 : 0;
    b[i] &= static_cast<uint8_t>(keep == 0 ? 0 : 0xff << (8 - keep));
  }
  base_ = IpAddress::V6(b.data());
}

std::optional<Cidr> Cidr::Parse(const std::string& text) {
  const size_t slash = text.find('/');
  const std::optional<IpAddress> base = IpAddress::Parse(text.substr(0, slash));
  if (!base) return std::nullopt;
  // A mapped address written in IPv6 form counts its bits as IPv6 does.
  const bool v4Text = text.substr(0, slash).find(':') == std::string::npos;
  const unsigned max = v4Text ? 32 : 128;
  unsigned len = max;
  if (slash != std::string::npos) {
    const std::optional<unsigned> n = ParsePrefixLen(text.substr(slash + 1), max);
    if (!n) return std::nullopt;
    len = *n;
  }
  if (!v4Text && base->IsV4()) {
    if (len < 96) return std::nullopt;
    len -= 96;
  }
  return Cidr(*base, len);
}

bool Cidr::Contains(const IpAddress& a) const {
  const auto& x = a.Bytes();
  const auto& b = base_.Bytes();
  for (unsigned i = 0; i < 16 && i * 8 < bits_; i++) {
    const unsigned keep = bits_ >= (i + 1) * 8 ? 8 : bits_ - i * 8;
    const uint8_t mask = static_cast<uint8_t>(0xff << (8 - keep));
    if ((x[i] & mask) != b[i]) return false;
  }
  return true;
}

bool Cidr::Covers(const Cidr& inner) const { return inner.bits_ >= bits_ && Contains(inner.base_); }

std::string Cidr::ToString() const {
  const bool v4 = base_.IsV4() && bits_ >= 96;
  return base_.ToString() + "/" + std::to_string(v4 ? bits_ - 96 : bits_);
}

std::optional<SpecialRange> ClassifyAddress(const IpAddress& a) {
  if (a.IsV4()) {
    for (const Range& r : V4Ranges())
      if (r.block.Contains(a)) return SpecialRange{r.block, r.kind};
    return std::nullopt;
  }
  for (const Embedding& e : Embeddings()) {
    if (!e.block.Contains(a)) continue;
    const auto& b = a.Bytes();
    const uint32_t v4 = static_cast<uint32_t>(b[e.offset]) << 24 | static_cast<uint32_t>(b[e.offset + 1]) << 16 |
                        static_cast<uint32_t>(b[e.offset + 2]) << 8 | b[e.offset + 3];
    // A translator would carry the connection to this IPv4 address; only a
    // rule naming the translated range itself unlocks it.
    if (std::optional<SpecialRange> inner = ClassifyAddress(IpAddress::V4(v4))) return SpecialRange{e.block, inner->kind};
    return std::nullopt;
  }
  for (const Range& r : V6Ranges())
    if (r.block.Contains(a)) return SpecialRange{r.block, r.kind};
  return std::nullopt;
}

std::optional<SpecialRange> ClassifyAddress(const IpAddress& a, const std::vector<IpAddress>& hostAddresses) {
  if (std::optional<SpecialRange> special = ClassifyAddress(a)) return special;
  for (const IpAddress& own : hostAddresses)
    if (own == a) return SpecialRange{Cidr(a, a.IsV4() ? 32 : 128), "the host's own address"};
  return std::nullopt;
}

std::vector<IpAddress> HostAddresses() {
  std::vector<IpAddress> out;
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return out;
  for (ifaddrs* i = list; i; i = i->ifa_next)
    if (std::optional<IpAddress> a = IpAddress::FromSockaddr(i->ifa_addr)) out.push_back(*a);
  freeifaddrs(list);
  return out;
}

bool IsHostName(const std::string& name) {
  if (name.empty() || name.size() > 253) return false;
  size_t label = 0;
  for (char c : name) {
    if (c == '.') {
      if (label == 0) return false;
      label = 0;
      continue;
    }
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    if (!ok || ++label > 63) return false;
  }
  return label > 0;
}

}  // namespace krunbox
