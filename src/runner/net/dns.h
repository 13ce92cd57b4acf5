// The guest's DNS server (at the gateway): queries are parsed with bounds,
// and every name the policy lets the guest reach gets a synthetic address
// of its own, so a later connection to that address is decided by the name.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/ip_address.h"

namespace krunbox::net {

constexpr uint16_t kDnsTypeA = 1, kDnsTypeAny = 255;
constexpr uint8_t kDnsNoError = 0, kDnsFormErr = 1, kDnsServFail = 2, kDnsNxDomain = 3, kDnsNotImp = 4,
                  kDnsRefused = 5;

struct DnsQuery {
  uint16_t id;
  uint16_t flags;
  std::string name;  // lower case, no trailing dot; "" for the root
  uint16_t qtype, qclass;
  size_t questionEnd;  // offset just past the question, to echo it back
};

// One standard query with one question; nullopt for anything else
// (responses, several questions, compression in the question, bad lengths).
std::optional<DnsQuery> ParseDnsQuery(const uint8_t* msg, size_t len);

// A response to `query` (the original message, for its question) with
// `rcode` and one A record per address.
std::string BuildDnsResponse(const uint8_t* msg, const DnsQuery& query, uint8_t rcode,
                             const std::vector<uint32_t>& addresses, uint32_t ttl);

// Synthetic IPv4 addresses, one per name, from a reserved block the guest
// routes to the gateway. When the table is full the oldest name gives its
// address up (a guest querying without end cannot grow it).
class NameTable {
 public:
  NameTable(uint32_t base, uint32_t count) : base_(base), count_(count) {}
  uint32_t AddressFor(const std::string& name);
  // The name behind a synthetic address, or nullptr.
  const std::string* NameOf(uint32_t address) const;
  bool InRange(uint32_t address) const { return address - base_ < count_; }

 private:
  uint32_t base_, count_, next_ = 0;
  std::map<std::string, uint32_t> byName_;
  std::map<uint32_t, std::string> byAddress_;
};

}  // namespace krunbox::net
