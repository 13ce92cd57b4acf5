#include "runner/net/dns.h"

namespace krunbox::net {
namespace {

constexpr size_t kHeader = 12;
uint16_t Get16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
void Append16(std::string& s, uint16_t v) {
  s.push_back(static_cast<char>(v >> 8));
  s.push_back(static_cast<char>(v));
}

}  // namespace

std::optional<DnsQuery> ParseDnsQuery(const uint8_t* msg, size_t len) {
  if (len < kHeader || len > 4096) return std::nullopt;
  DnsQuery q;
  q.id = Get16(msg);
  q.flags = Get16(msg + 2);
  if ((q.flags & 0x8000) || ((q.flags >> 11) & 0xf) != 0) return std::nullopt;  // a response, or not QUERY
  if (Get16(msg + 4) != 1) return std::nullopt;
  size_t i = kHeader;
  std::string name;
  for (;;) {
    if (i >= len) return std::nullopt;
    const uint8_t l = msg[i++];
    if (l == 0) break;
    if (l > 63 || i + l > len || name.size() + l + 1 > 255) return std::nullopt;  // pointers (0xc0) included
    if (!name.empty()) name.push_back('.');
    for (size_t k = 0; k < l; k++) {
      const char c = static_cast<char>(msg[i + k]);
      name.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c);
    }
    i += l;
  }
  if (i + 4 > len) return std::nullopt;
  q.name = name;
  q.qtype = Get16(msg + i);
  q.qclass = Get16(msg + i + 2);
  q.questionEnd = i + 4;
  return q;
}

std::string BuildDnsResponse(const uint8_t* msg, const DnsQuery& q, uint8_t rcode,
                             const std::vector<uint32_t>& addresses, uint32_t ttl) {
  std::string r;
  Append16(r, q.id);
  // QR, the query's opcode and RD, AA (the synthetic names are ours), RA.
  Append16(r, static_cast<uint16_t>(0x8000 | (q.flags & 0x7900) | 0x0400 | 0x0080 | (rcode & 0xf)));
  Append16(r, 1);
  Append16(r, static_cast<uint16_t>(addresses.size()));
  Append16(r, 0);
  Append16(r, 0);
  r.append(reinterpret_cast<const char*>(msg) + kHeader, q.questionEnd - kHeader);
  for (uint32_t a : addresses) {
    Append16(r, 0xc00c);  // the question's name
    Append16(r, kDnsTypeA);
    Append16(r, 1);  // IN
    Append16(r, static_cast<uint16_t>(ttl >> 16));
    Append16(r, static_cast<uint16_t>(ttl));
    Append16(r, 4);
    Append16(r, static_cast<uint16_t>(a >> 16));
    Append16(r, static_cast<uint16_t>(a));
  }
  return r;
}

uint32_t NameTable::AddressFor(const std::string& name) {
  if (auto it = byName_.find(name); it != byName_.end()) return it->second;
  const uint32_t address = base_ + next_;
  next_ = (next_ + 1) % count_;
  if (auto old = byAddress_.find(address); old != byAddress_.end()) {
    byName_.erase(old->second);
    byAddress_.erase(old);
  }
  byName_[name] = address;
  byAddress_[address] = name;
  return address;
}

const std::string* NameTable::NameOf(uint32_t address) const {
  auto it = byAddress_.find(address);
  return it == byAddress_.end() ? nullptr : &it->second;
}

}  // namespace krunbox::net
