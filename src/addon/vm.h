// The JS-facing VM object: validates a config, spawns its runner without
// blocking the event loop, and forwards the runner's events to JS.
#pragma once

#include <napi.h>
#include <sys/types.h>

#include <atomic>
#include <thread>

#include "common/vm_config.h"

namespace krunbox {

class Vm : public Napi::ObjectWrap<Vm> {
 public:
  static Napi::Object Init(Napi::Env env, Napi::Object exports);
  explicit Vm(const Napi::CallbackInfo& info);
  ~Vm() override;

 private:
  Napi::Value Start(const Napi::CallbackInfo& info);
  Napi::Value Stop(const Napi::CallbackInfo& info);
  Napi::Value Verdict(const Napi::CallbackInfo& info);
  Napi::Value Attach(const Napi::CallbackInfo& info);
  Napi::Value Pid(const Napi::CallbackInfo& info);
  Napi::Value KeepAlive(const Napi::CallbackInfo& info);
  Napi::Value LetGo(const Napi::CallbackInfo& info);

  void Watch();

  VmConfig config_;
  std::string runnerPath_;
  Napi::ThreadSafeFunction onEvent_;
  pid_t pid_ = -1;
  int eventsFd_ = -1;
  int controlFd_ = -1;
  // Touched on the JS thread only: from start() until the last event.
  bool running_ = false;
  bool keepsNodeAlive_ = true;
  // Monotonic ms after which the watcher kills the runner's process group:
  // the backstop for a stop that the runner itself could not complete.
  std::atomic<int64_t> killDeadline_{-1};
  std::thread watcher_;
};

}  // namespace krunbox
