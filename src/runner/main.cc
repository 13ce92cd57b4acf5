// krunbox-runner: one process per VM, spawned by the addon (spawn + exec, so
// the VMM never inherits the host program's memory). File descriptors:
//   0  the VM config as one JSON document, then EOF
//   3  events to the addon (JSON lines)
//   4  control lines from the addon (addon_control.h)
// The runner dies with its parent (PR_SET_PDEATHSIG) and takes every helper
// process with it.
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <memory>

#include "runner/backend.h"
#include "runner/util.h"

namespace krunbox {

void Events::Send(const nlohmann::json& event) const {
  const std::string line = event.dump() + "\n";
  std::lock_guard<std::mutex> lock(mu_);
  WriteAll(fd_, line);
}

namespace {

constexpr size_t kMaxConfigBytes = 4 << 20;

std::string ReadConfig() {
  std::string data;
  char buf[65536];
  for (;;) {
    ssize_t n = read(0, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) ThrowErrno("CONFIG", "reading the VM config");
    if (n == 0) return data;
    data.append(buf, static_cast<size_t>(n));
    if (data.size() > kMaxConfigBytes) throw RunnerError("CONFIG", "VM config larger than 4 MiB");
  }
}

int Main() {
  // SIGTERM, not SIGKILL: the qemu backend catches it to stop its helpers
  // and remove its run folder before exiting.
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  close_range(5, ~0U, 0);  // nothing of the host program leaks into the VM
  if (const char* ppid = getenv("KRUNBOX_PARENT_PID"); ppid && atoi(ppid) != getppid()) return 1;
  signal(SIGPIPE, SIG_IGN);

  Events events(3);
  try {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(ReadConfig());
    } catch (const nlohmann::json::exception& e) {
      throw RunnerError("CONFIG", std::string("VM config is not valid JSON: ") + e.what());
    }
    const VmConfig config = VmConfigFromJson(j);
    std::unique_ptr<Backend> backend(config.backend == "libkrun" ? NewLibkrunBackend() : NewQemuBackend());
    RunContext ctx{config, events, 4};
    backend->Run(ctx);
  } catch (const ConfigError& e) {
    events.Send({{"event", "error"}, {"code", "CONFIG"}, {"field", e.field()}, {"message", e.what()}});
  } catch (const RunnerError& e) {
    events.Send({{"event", "error"}, {"code", e.code()}, {"message", e.what()}});
  } catch (const std::exception& e) {
    events.Send({{"event", "error"}, {"code", "INTERNAL"}, {"message", e.what()}});
  }
  return 0;
}

}  // namespace
}  // namespace krunbox

int main(int argc, char** argv) {
  if (argc == 2 && std::string(argv[1]) == "--version") {
    printf("krunbox-runner %s\n", KRUNBOX_VERSION);
    return 0;
  }
  return krunbox::Main();
}
