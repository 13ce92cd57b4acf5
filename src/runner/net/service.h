// The runner's network thread: the guest's network stack (when the VM has
// a network) and the published ports, in one poll loop apart from the
// backend's own (libkrun's krun_start_enter never returns; QEMU's loop
// supervises processes). Other threads talk to it through Post().
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "common/vm_config.h"
#include "runner/backend.h"
#include "runner/net/ports.h"
#include "runner/net/stack.h"

namespace krunbox::net {

class NetService {
 public:
  // Binds the published ports (a taken one throws RunnerError PORT_IN_USE)
  // and reports them in a "ports" event.
  NetService(const VmConfig& config, const Events& events);
  ~NetService();

  bool HasNetwork() const { return stack_ != nullptr; }
  // A guest link for a VMM: returns the VMM's end; the stack takes the
  // other, replacing the link of an earlier boot.
  Fd NewGuestLink();
  void Verdict(uint64_t id, bool allowed);
  void Start();

 private:
  void Post(std::function<void()> fn);
  void Loop();

  std::unique_ptr<NetStack> stack_;
  std::unique_ptr<PublishedPorts> ports_;
  Fd wake_;
  std::mutex mu_;
  std::vector<std::function<void()>> posted_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace krunbox::net
