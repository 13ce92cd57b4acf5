// The libkrun backend: the system's libkrun, configured only through its C
// API, running krunbox-agent under libkrun's own init. krun_start_enter()
// takes this process over and exits it with the agent's status (the
// command's), which is why every VM gets its own runner process.
#include <dlfcn.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <thread>

#include "common/agent_ports.h"
#include "runner/addon_control.h"
#include "runner/attach.h"
#include "runner/backend.h"
#include "runner/control.h"
#include "runner/net/guest_network.h"
#include "runner/net/service.h"
#include "runner/staging.h"
#include "runner/util.h"

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
  // Only for VMs with a network, or a disk image root (newer libkrun).
  int32_t (*add_net_unixstream)(uint32_t, const char*, int, uint8_t*, uint32_t, uint32_t);
  int32_t (*add_disk2)(uint32_t, const char*, const char*, uint32_t, bool);
};

// krun_add_disk2's disk_format values (libkrun.h).
constexpr uint32_t kKrunDiskFormatRaw = 0, kKrunDiskFormatQcow2 = 1;

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
  api.add_net_unixstream = reinterpret_cast<decltype(api.add_net_unixstream)>(dlsym(lib, "krun_add_net_unixstream"));
  api.add_disk2 = reinterpret_cast<decltype(api.add_disk2)>(dlsym(lib, "krun_add_disk2"));
  return api;
}

void Check(int32_t rc, const char* call) {
  if (rc < 0) throw RunnerError("VMM_FAILED", std::string(call) + " failed: error " + std::to_string(-rc));
}

// The runner's main thread is inside krun_start_enter, so the agent's
// control connection and the addon's control lines are served here.
class ControlThread {
 public:
  ControlThread(const std::string& path, const std::string& tree, RunContext& ctx, net::NetService& net)
      : channel_(path), ctx_(ctx), net_(net), addon_(ctx.controlFd), attachments_(tree, ctx.events) {}
  void Start() {
    std::thread([this] { Loop(); }).detach();
  }

 private:
  [[noreturn]] void Loop() {
    GuestReport report;
    bool ready = false;
    int64_t deadline = -1;
    for (;;) {
      std::vector<pollfd> fds = {{ctx_.controlFd, POLLIN, 0}};
      channel_.AddPollFds(fds);
      poll(fds.data(), fds.size(), deadline < 0 ? -1 : static_cast<int>(std::max<int64_t>(0, deadline - NowMs())));
      channel_.Handle(fds, report);
      attachments_.TakeReplies(report);
      if (report.ready && !ready) {
        ready = true;
        ctx_.events.Send({{"event", "ready"}});
      }
      if (fds[0].revents) {
        std::vector<AddonCommand> commands;
        if (!addon_.Read(commands)) Exit();
        for (const AddonCommand& cmd : commands) {
          if (cmd.kind == AddonCommand::Kind::Verdict) {
            net_.Verdict(cmd.id, cmd.allowed);
            continue;
          }
          if (cmd.kind == AddonCommand::Kind::Attach) {
            attachments_.Request(cmd, channel_, ready && deadline < 0);
            continue;
          }
          // Ask the agent to power off; without it (or without time) end the VM now.
          if (cmd.graceMs > 0 && ready && channel_.RequestPowerOff()) deadline = NowMs() + cmd.graceMs;
          else Exit();
        }
      }
      if (deadline >= 0 && NowMs() >= deadline) Exit();
    }
  }

  [[noreturn]] void Exit() {
    ctx_.events.Send({{"event", "exit"}, {"stopped", true}, {"forced", true}});
    _exit(0);  // takes libkrun's threads, and so the VM, with it
  }

  ControlChannel channel_;
  RunContext& ctx_;
  net::NetService& net_;
  AddonControl addon_;
  Attachments attachments_;
};

class LibkrunBackend : public Backend {
 public:
  void Run(RunContext& ctx) override {
    const VmConfig& c = ctx.config;
    const KrunApi krun = LoadLibkrun(c.libkrunPath.empty() ? EnvOr("KRUNBOX_LIBKRUN") : c.libkrunPath);
    // As in the qemu backend, the agent gets one virtio-fs tree with the
    // root, every share and its config; libkrun's root only has to hold
    // libkrun's init and the agent. krun_start_enter ends the process with
    // exit(), which runs the run folder's static destructor; if it is killed
    // instead, the next runner sweeps the folder.
    static struct Folder {
      RunDir dir;
      std::string tree = dir.path() + "/fs";
      ~Folder() { UnmountSharedTree(tree); }  // before RunDir removes the folder
    } folder;
    const std::string& tree = folder.tree;
    BuildSharedTree(c, tree, c.rootDisk ? RootSource::Disk : RootSource::Tree);
    const std::string controlPath = folder.dir.path() + "/ctl.sock";
    // Never destroyed, like the control thread: both run until the process ends.
    net::NetService& net = *new net::NetService(c, ctx.events);
    ControlThread& control = *new ControlThread(controlPath, tree, ctx, net);

    const int32_t id = krun.create_ctx();
    Check(id, "krun_create_ctx");
    const uint32_t ctxId = static_cast<uint32_t>(id);
    Check(krun.set_vm_config(ctxId, static_cast<uint8_t>(c.cpus), c.memoryMiB), "krun_set_vm_config");
    if (c.rootReadOnly) Check(krun.add_virtiofs3(ctxId, "/dev/root", c.rootPath.c_str(), 0, true), "krun_add_virtiofs3");
    else Check(krun.set_root(ctxId, c.rootPath.c_str()), "krun_set_root");
    Check(krun.add_virtiofs3(ctxId, "krunbox", tree.c_str(), 0, false), "krun_add_virtiofs3");
    if (c.rootDisk) {
      // The guest's /dev/vda, opened read-only (the agent overlays it), in
      // the format the user gave: libkrun never probes it.
      if (!krun.add_disk2)
        throw RunnerError("LIBKRUN_TOO_OLD", "this libkrun has no krun_add_disk2, which a disk image root needs; "
                                             "install a newer libkrun (" + std::string(kInstallHint) + ")");
      Check(krun.add_disk2(ctxId, "root", c.rootDisk->path.c_str(),
                           c.rootDisk->format == "qcow2" ? kKrunDiskFormatQcow2 : kKrunDiskFormatRaw, true),
            "krun_add_disk2");
    }
    // No TSI: without this libkrun would give the guest the host's network.
    Check(krun.disable_implicit_vsock(ctxId), "krun_disable_implicit_vsock");
    Check(krun.add_vsock(ctxId, 0), "krun_add_vsock");
    if (net.HasNetwork()) {
      // The guest's only way out: a virtio-net device whose other end is
      // the runner's network stack (no offloads, no DHCP: the agent sets eth0 up).
      if (!krun.add_net_unixstream)
        throw RunnerError("LIBKRUN_TOO_OLD", "this libkrun has no krun_add_net_unixstream, which a sandbox with a "
                                             "network needs; install a newer libkrun (" + std::string(kInstallHint) + ")");
      net::Mac mac = net::kGuestMac;
      Check(krun.add_net_unixstream(ctxId, nullptr, net.NewGuestLink().release(), mac.data(), 0, 0),
            "krun_add_net_unixstream");
    }
    Check(krun.add_vsock_port2(ctxId, kControlPort, controlPath.c_str(), false), "krun_add_vsock_port2");
    if (!c.agentSocketPath.empty())
      Check(krun.add_vsock_port2(ctxId, kExecPort, c.agentSocketPath.c_str(), true), "krun_add_vsock_port2");
    if (!c.agentFsSocketPath.empty())
      Check(krun.add_vsock_port2(ctxId, kFsPort, c.agentFsSocketPath.c_str(), true), "krun_add_vsock_port2");
    if (!c.forwardSocketPath.empty())
      Check(krun.add_vsock_port2(ctxId, kForwardPort, c.forwardSocketPath.c_str(), true), "krun_add_vsock_port2");
    for (const VsockPort& p : c.vsock)
      Check(krun.add_vsock_port2(ctxId, p.port, p.socketPath.c_str(), p.listen), "krun_add_vsock_port2");
    // The agent takes the command, env and workdir from the tree's config;
    // an empty environment keeps the host's out of the guest.
    const char* const argv[] = {"--under-init", nullptr};
    const char* const envp[] = {nullptr};
    Check(krun.set_exec(ctxId, "/sbin/krunbox-agent", argv, envp), "krun_set_exec");
    Check(krun.set_workdir(ctxId, "/"), "krun_set_workdir");
    if (!c.consolePath.empty())
      Check(krun.set_console_output(ctxId, c.consolePath.c_str()), "krun_set_console_output");
    control.Start();
    net.Start();
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
