// The libkrun backend: the system's libkrun, configured only through its C
// API. krun_start_enter() takes this process over and exits it with the
// workload's status, which is why every VM gets its own runner process.
#include <dlfcn.h>
#include <stdlib.h>
#include <unistd.h>

#include "backend.h"
#include "util.h"

namespace krunbox {
namespace {

// Every libkrun entry point the backend uses, resolved with dlsym so that a
// missing or old libkrun is a typed error rather than a loader failure.
struct KrunApi {
  int32_t (*create_ctx)();
  int32_t (*set_vm_config)(uint32_t, uint8_t, uint32_t);
  int32_t (*set_root)(uint32_t, const char*);
  int32_t (*add_virtiofs3)(uint32_t, const char*, const char*, uint64_t, bool);
  int32_t (*disable_implicit_vsock)(uint32_t);
  int32_t (*add_vsock)(uint32_t, uint32_t);
  int32_t (*add_vsock_port2)(uint32_t, uint32_t, const char*, bool);
  int32_t (*set_exec)(uint32_t, const char*, const char* const*, const char* const*);
  int32_t (*set_workdir)(uint32_t, const char*);
  int32_t (*set_console_output)(uint32_t, const char*);
  int32_t (*start_enter)(uint32_t);
};

const char* const kInstallHint =
    "install libkrun (Fedora: dnf install libkrun; Debian/Ubuntu: apt-get install libkrun1; "
    "macOS: brew install libkrun) or set KRUNBOX_LIBKRUN to the path of libkrun.so.1";

KrunApi LoadLibkrun(const std::string& override) {
  const std::string name = override.empty() ? "libkrun.so.1" : override;
  void* lib = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib) throw RunnerError("LIBKRUN_NOT_FOUND", "cannot load " + name + " (" + dlerror() + "); " + kInstallHint);
  KrunApi api{};
  auto sym = [&](auto& fn, const char* symbol) {
    fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(lib, symbol));
    if (!fn)
      throw RunnerError("LIBKRUN_TOO_OLD", name + " has no " + symbol +
                                               "; krunbox needs libkrun 1.15 or newer (" + kInstallHint + ")");
  };
  sym(api.create_ctx, "krun_create_ctx");
  sym(api.set_vm_config, "krun_set_vm_config");
  sym(api.set_root, "krun_set_root");
  sym(api.add_virtiofs3, "krun_add_virtiofs3");
  sym(api.disable_implicit_vsock, "krun_disable_implicit_vsock");
  sym(api.add_vsock, "krun_add_vsock");
  sym(api.add_vsock_port2, "krun_add_vsock_port2");
  sym(api.set_exec, "krun_set_exec");
  sym(api.set_workdir, "krun_set_workdir");
  sym(api.set_console_output, "krun_set_console_output");
  sym(api.start_enter, "krun_start_enter");
  return api;
}

void Check(int32_t rc, const char* call) {
  if (rc < 0) throw RunnerError("VMM_FAILED", std::string(call) + " failed: error " + std::to_string(-rc));
}

std::vector<const char*> CStrings(const std::vector<std::string>& v) {
  std::vector<const char*> out;
  for (const std::string& s : v) out.push_back(s.c_str());
  out.push_back(nullptr);
  return out;
}

class LibkrunBackend : public Backend {
 public:
  void Run(RunContext& ctx) override {
    const VmConfig& c = ctx.config;
    const KrunApi krun = LoadLibkrun(c.libkrunPath.empty() ? EnvOr("KRUNBOX_LIBKRUN") : c.libkrunPath);
    const int32_t id = krun.create_ctx();
    Check(id, "krun_create_ctx");
    const uint32_t ctxId = static_cast<uint32_t>(id);
    Check(krun.set_vm_config(ctxId, static_cast<uint8_t>(c.cpus), c.memoryMiB), "krun_set_vm_config");
    // libkrun exports the root with its own virtio-fs tag; a read-only root
    // goes through krun_add_virtiofs3 so the device enforces it.
    if (c.rootReadOnly) Check(krun.add_virtiofs3(ctxId, "/dev/root", c.rootPath.c_str(), 0, true), "krun_add_virtiofs3");
    else Check(krun.set_root(ctxId, c.rootPath.c_str()), "krun_set_root");
    for (const Share& s : c.shares)
      Check(krun.add_virtiofs3(ctxId, s.tag.c_str(), s.hostPath.c_str(), 0, s.readOnly), "krun_add_virtiofs3");
    // No TSI: without this libkrun would give the guest the host's network.
    Check(krun.disable_implicit_vsock(ctxId), "krun_disable_implicit_vsock");
    Check(krun.add_vsock(ctxId, 0), "krun_add_vsock");
    if (!c.agentSocketPath.empty())
      Check(krun.add_vsock_port2(ctxId, kExecPort, c.agentSocketPath.c_str(), true), "krun_add_vsock_port2");
    for (const VsockPort& p : c.vsock)
      Check(krun.add_vsock_port2(ctxId, p.port, p.socketPath.c_str(), p.listen), "krun_add_vsock_port2");
    const std::vector<std::string> args(c.command.begin() + 1, c.command.end());
    const std::vector<const char*> argv = CStrings(args), envp = CStrings(c.env);
    // An explicit envp (never NULL) keeps the host's environment out of the guest.
    Check(krun.set_exec(ctxId, c.command[0].c_str(), argv.data(), envp.data()), "krun_set_exec");
    Check(krun.set_workdir(ctxId, c.workdir.c_str()), "krun_set_workdir");
    if (!c.consolePath.empty())
      Check(krun.set_console_output(ctxId, c.consolePath.c_str()), "krun_set_console_output");
    ctx.events.Send({{"event", "booting"}, {"accel", "kvm"}, {"pid", getpid()}});
    Check(krun.start_enter(ctxId), "krun_start_enter");
    throw RunnerError("VMM_FAILED", "krun_start_enter returned without running the VM");
  }

 private:
  static std::string EnvOr(const char* name) {
    const char* v = getenv(name);
    return v ? v : "";
  }
};

}  // namespace

Backend* NewLibkrunBackend() { return new LibkrunBackend(); }

}  // namespace krunbox
