// What the runner hands a backend: the validated config, the event channel
// to the addon and the addon's control pipe.
#pragma once

#include <mutex>
#include <string>

#include <nlohmann/json.hpp>

#include "common/vm_config.h"

namespace krunbox {

// Newline-delimited JSON events to the addon on fd 3. The last event of a
// run is always "exit" or "error" (except when libkrun's krun_start_enter
// takes the process over: then the runner's own exit status is the guest's).
// The network thread sends events too, so each line is written whole.
class Events {
 public:
  explicit Events(int fd) : fd_(fd) {}
  void Send(const nlohmann::json& event) const;

 private:
  int fd_;
  mutable std::mutex mu_;
};

struct RunContext {
  const VmConfig& config;
  const Events& events;
  int controlFd;       // addon -> runner lines (addon_control.h)
};

class Backend {
 public:
  virtual ~Backend() = default;
  // Boots the VM and supervises it to the end, reporting through events.
  virtual void Run(RunContext& ctx) = 0;
};

Backend* NewQemuBackend();
Backend* NewLibkrunBackend();

}  // namespace krunbox
