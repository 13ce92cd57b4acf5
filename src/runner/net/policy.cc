#include "runner/net/policy.h"

namespace krunbox::net {

bool Policy::NameMatches(const NetRule& rule, const std::string& name) {
  if (name.empty()) return false;
  switch (rule.kind) {
    case NetRule::Kind::Any: return true;
    case NetRule::Kind::Name: return name == rule.name;
    case NetRule::Kind::Suffix:
      return name.size() > rule.name.size() && name.compare(name.size() - rule.name.size(), rule.name.size(), rule.name) == 0;
    default: return false;
  }
}

bool Policy::Matches(const NetRule& rule, const std::string& name, const IpAddress& address, uint16_t port) {
  if (rule.port && rule.port != port) return false;
  if (rule.kind == NetRule::Kind::Any) return true;
  if (rule.kind == NetRule::Kind::Cidr) return rule.cidr.Contains(address);
  return NameMatches(rule, name);
}

bool Policy::NameMayConnect(const std::string& name) const {
  for (const NetRule& r : config_.deny)
    if (!r.port && NameMatches(r, name)) return false;
  for (const NetRule& r : config_.allow)
    if (NameMatches(r, name)) return true;
  return false;
}

const std::vector<IpAddress>* Policy::HostsEntry(const std::string& name) const {
  auto it = config_.hosts.find(name);
  return it == config_.hosts.end() ? nullptr : &it->second;
}

Verdict Policy::Decide(const std::string& name, const IpAddress& address, uint16_t port, bool fromHosts) const {
  for (const NetRule& r : config_.deny)
    if (Matches(r, name, address, port)) return {false, "deny entry \"" + r.text + "\""};

  std::optional<SpecialRange> special = ClassifyAddress(address, hostAddresses_);

  std::string blocked;
  for (const NetRule& r : config_.allow) {
    if (!Matches(r, name, address, port)) continue;
    if (!special) return {true, "allow entry \"" + r.text + "\""};
    // A special address is reached only when the entry names it.
    const bool named = (r.kind == NetRule::Kind::Cidr && special->block.Covers(r.cidr)) ||
                       (fromHosts && (r.kind == NetRule::Kind::Name || r.kind == NetRule::Kind::Suffix));
    if (named) return {true, "allow entry \"" + r.text + "\""};
    if (blocked.empty())
      blocked = address.ToString() + " is " + special->kind +
                ": only an allow entry naming it (or a name mapped to it in hosts) reaches it";
  }
  if (!blocked.empty()) return {false, blocked};
  return {false, "no allow entry matches"};
}

}  // namespace krunbox::net
