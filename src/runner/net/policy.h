// The egress decision: which destinations a guest connection may reach.
// Deny entries win; then an allow entry must match. Loopback, private,
// link-local and other special addresses (and the host's own) are reached
// only through an entry that names them: a prefix inside their range, or a
// name the user mapped to them in `hosts`. "*" and names that merely
// resolve there never do, so DNS rebinding gains nothing: the check is on
// the address actually connected.
#pragma once

#include <string>
#include <vector>

#include "common/ip_address.h"
#include "common/vm_config.h"

namespace krunbox::net {

struct Verdict {
  bool allowed = false;
  std::string reason;
};

class Policy {
 public:
  explicit Policy(NetworkConfig config) : config_(std::move(config)) {}

  // Whether the guest's DNS gets an address for `name`: some allow entry
  // matches it (on any port) and no deny entry shuts it out on every port.
  // Other names are never looked up on the host (no DNS tunnelling).
  bool NameMayConnect(const std::string& name) const;
  // The `hosts` override for a name, or nullptr.
  const std::vector<IpAddress>* HostsEntry(const std::string& name) const;

  // A connection to `address`:`port`, reached through `name` (empty for a
  // connection to an IP address); `fromHosts`: the address came from `hosts`.
  Verdict Decide(const std::string& name, const IpAddress& address, uint16_t port, bool fromHosts) const;

  // The host's own addresses are special too (refreshed now and then).
  void SetHostAddresses(std::vector<IpAddress> addresses) { hostAddresses_ = std::move(addresses); }
  bool askHost() const { return config_.askHost; }

 private:
  static bool NameMatches(const NetRule& rule, const std::string& name);
  static bool Matches(const NetRule& rule, const std::string& name, const IpAddress& address, uint16_t port);

  NetworkConfig config_;
  std::vector<IpAddress> hostAddresses_;
};

}  // namespace krunbox::net
