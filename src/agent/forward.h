// The agent's port forwarder (vsock port kForwardPort): the host opens one
// connection per TCP connection it wants inside the guest and sends
// "connect <port>\n"; the agent dials 127.0.0.1 (then ::1) on that port in
// the guest, answers "ok\n" or "error <reason>\n", and then copies bytes
// both ways. Published ports and Sandbox.connect() use it, so they work
// without a network device.
#pragma once

#include <poll.h>

#include <list>
#include <memory>
#include <string>
#include <vector>

#include "common/posix.h"
#include "common/splice.h"

namespace agent {

class ForwardServer {
 public:
  explicit ForwardServer(uint32_t port);
  void AddPollFds(std::vector<pollfd>& fds) const;
  void Handle(const std::vector<pollfd>& fds);

 private:
  struct Conn {
    krunbox::Fd host, guest;
    std::string request;
    uint16_t port = 0;
    int family = 0;  // AF_INET, then AF_INET6 once 127.0.0.1 refused
    int64_t deadline = 0;
    std::unique_ptr<krunbox::Splice> splice;
    bool done = false;
  };
  void ReadRequest(Conn& c);
  void Dial(Conn& c);
  void Reply(Conn& c, const std::string& line);

  krunbox::Fd listen_;
  std::list<Conn> conns_;
};

}  // namespace agent
