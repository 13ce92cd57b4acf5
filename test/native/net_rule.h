// A policy entry for the network tests, as lib/network/policy.ts would send it.
#pragma once

#include <string>

#include "common/vm_config.h"

inline krunbox::NetRule Rule(krunbox::NetRule::Kind kind, const std::string& value, uint16_t port = 0) {
  krunbox::NetRule r;
  r.kind = kind;
  r.port = port;
  r.text = value;
  if (kind == krunbox::NetRule::Kind::Cidr) r.cidr = *krunbox::Cidr::Parse(value);
  else r.name = value;
  return r;
}
