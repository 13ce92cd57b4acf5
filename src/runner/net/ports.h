// Published ports: host TCP listeners (127.0.0.1 unless told otherwise)
// whose connections reach a guest port through the agent's forwarder (a
// Unix socket the backend bridges to vsock port kForwardPort). They need no
// network device, and they live in the runner, so they keep serving
// whatever the host program's event loop is doing.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/splice.h"
#include "common/vm_config.h"
#include "runner/net/poll_set.h"

namespace krunbox::net {

class PublishedPorts {
 public:
  // Binds every port now: a taken one is RunnerError PORT_IN_USE, another
  // failure a ConfigError naming the entry.
  PublishedPorts(const std::vector<PortForward>& ports, std::string forwardSocket);
  // [{hostIp, hostPort, guestPort}], host ports as bound (0 resolved).
  nlohmann::json Describe() const;

  void AddPollFds(PollSet& ps);
  void AfterRound();

 private:
  struct Listener {
    PortForward spec;
    Fd fd;
  };
  struct Conn {
    Fd client, guest;
    std::string reply;
    int64_t deadline = 0;
    std::unique_ptr<Splice> splice;
    std::vector<pollfd> events;  // the splice's fds, with this round's revents
    bool done = false;
  };
  void Accept(Listener& l);
  void ReadReply(Conn& c);

  std::string forwardSocket_;
  std::vector<Listener> listeners_;
  std::vector<std::unique_ptr<Conn>> conns_;
};

}  // namespace krunbox::net
