// Where a guest connection may go, and the host socket that carries it:
// the name behind a synthetic address, the host's lookup of that name (or
// its `hosts` override), the policy on every address, the host program's
// onConnect verdict, then a non-blocking connect(). Every decision is
// reported as a "connection" event. Also answers the guest's DNS questions,
// handing out synthetic addresses for the names the policy may allow.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/posix.h"
#include "runner/net/dns.h"
#include "runner/net/policy.h"
#include "runner/net/poll_set.h"
#include "runner/net/resolver.h"

namespace krunbox::net {

class Egress {
 public:
  using Emit = std::function<void(const nlohmann::json&)>;
  // A connected socket, or an invalid Fd when the connection is refused.
  using Done = std::function<void(Fd socket)>;
  using Answer = std::function<void(uint8_t rcode, const std::vector<uint32_t>& addresses)>;

  Egress(NetworkConfig config, Emit emit);
  ~Egress();

  // Starts deciding a guest connection to `dstIp`:`port` (as the guest
  // addressed it); `done` runs once, later (never from inside Start), unless
  // Cancel came first. Returns the attempt's id.
  uint64_t Start(bool tcp, uint32_t dstIp, uint16_t port, Done done);
  void Cancel(uint64_t id);
  // The host program's answer to a "connect-request" event.
  void Verdict(uint64_t id, bool allowed);

  // A DNS question from the guest; `answer` may run now or later.
  void Query(const std::string& name, uint16_t qtype, Answer answer);

  void AddPollFds(PollSet& ps);
  int64_t Deadline() const;
  void OnTimers(int64_t now);

 private:
  struct Attempt;
  struct NameInfo {
    std::vector<IpAddress> addresses;
    int64_t expires = 0;
    std::vector<std::function<void()>> waiting;  // queries and attempts
  };

  void Decide(Attempt& a);
  void Connect(Attempt& a);
  void OnConnected(Attempt& a);
  void Finish(Attempt& a, bool connected, const std::string& reason, const std::string& error = "");
  void OnResolved();
  // Runs `then` once the name's addresses are known (at once if they are).
  void WithAddresses(const std::string& name, std::function<void()> then);

  Policy policy_;
  Emit emit_;
  Resolver resolver_;
  NameTable synthetic_;
  std::map<std::string, NameInfo> names_;
  size_t waitingCount_ = 0;
  std::map<uint64_t, std::unique_ptr<Attempt>> attempts_;
  uint64_t nextId_ = 1;
  int64_t hostAddressesAt_ = 0;
};

}  // namespace krunbox::net
