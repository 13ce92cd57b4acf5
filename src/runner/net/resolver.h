// Host name lookups (getaddrinfo, which honours the host's resolver set-up)
// on worker threads, so that a slow name never stalls the network loop.
// Results come back through an eventfd the loop polls.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/ip_address.h"

namespace krunbox::net {

class Resolver {
 public:
  struct Result {
    std::string name;
    std::vector<IpAddress> addresses;  // empty: the name does not resolve
  };

  Resolver();
  ~Resolver();
  int fd() const;  // readable when results are waiting
  // Looks `name` up; a lookup already under way for it is not repeated.
  void Lookup(const std::string& name);
  std::vector<Result> TakeResults();

 private:
  struct Shared;
  std::shared_ptr<Shared> shared_;
};

}  // namespace krunbox::net
