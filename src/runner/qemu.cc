// The qemu backend: qemu-system-x86_64 -M microvm with one vhost-user-fs
// device (virtiofsd) and one vhost-user-vsock device (vhost-device-vsock),
// all children of this runner. KVM when it can run the guest, TCG otherwise.
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <optional>

#include "common/agent_ports.h"
#include "runner/addon_control.h"
#include "runner/attach.h"
#include "runner/backend.h"
#include "runner/console.h"
#include "runner/control.h"
#include "runner/net/service.h"
#include "runner/qemu_args.h"
#include "runner/share_filter.h"
#include "runner/staging.h"
#include "runner/vsock_bridge.h"

namespace krunbox {
namespace {

// A KVM boot that cannot run this guest (e.g. PVM hosts, which only run
// PVM-patched kernels) either aborts QEMU at once or never reaches the agent.
constexpr uint32_t kKvmProbeMs = 15000;
constexpr int kHelperSocketWaitMs = 5000;

bool KvmUsable() {
  Fd fd(open("/dev/kvm", O_RDWR | O_CLOEXEC));
  return fd.valid();
}

std::string ReadAccelCache(const std::string& path) {
  if (path.empty()) return "";
  std::string s = FileTail(path, 16);
  return s.rfind("tcg", 0) == 0 ? "tcg" : s.rfind("kvm", 0) == 0 ? "kvm" : "";
}

void WriteAccelCache(const std::string& path, const std::string& accel) {
  if (path.empty()) return;
  const std::string tmp = path + ".tmp" + std::to_string(getpid());
  {
    Fd fd(open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!fd.valid() || !WriteAll(fd.get(), accel + "\n")) return;
  }
  rename(tmp.c_str(), path.c_str());
}

void WaitForSocket(const std::string& path, pid_t owner, const std::string& logPath) {
  const int64_t deadline = NowMs() + kHelperSocketWaitMs;
  struct stat st;
  while (lstat(path.c_str(), &st) != 0) {
    int status;
    if (waitpid(owner, &status, WNOHANG) == owner)
      throw RunnerError("VMM_FAILED", "helper exited before creating " + path + ": " + FileTail(logPath, 2000));
    if (NowMs() > deadline) throw RunnerError("VMM_FAILED", "timed out waiting for " + path);
    usleep(2000);
  }
}

// One boot attempt's outcome.
struct Attempt {
  bool ready = false;          // the guest agent connected
  bool bootTimedOut = false;
  bool stopped = false;        // the addon asked to stop
  bool forced = false;         // ...and the guest did not power off in time
  bool terminated = false;     // the runner got SIGTERM (host program died)
  int qemuStatus = 0;          // wait status
  GuestReport report;
};

class QemuBackend : public Backend {
 public:
  void Run(RunContext& ctx) override;

 private:
  Attempt Boot(RunContext& ctx, Accel accel, uint32_t readyTimeoutMs);
  void KillHelpers();

  RunDir* dir_ = nullptr;
  net::NetService* net_ = nullptr;
  AddonControl* addon_ = nullptr;
  RootSource rootSource_ = RootSource::Tree;
  std::string treeDir_, rootDir_, fsSock_, rootFsSock_, vsockVhost_, vsockUds_, consolePath_, consoleFifo_;
  int attempts_ = 0;
  std::vector<pid_t> helpers_;
  std::vector<sock_filter> shareFilter_;
  Fd signals_;
};

void QemuBackend::KillHelpers() {
  // virtiofsd serves from a child in its own PID namespace, which ignores
  // the SIGTERM its parent's death sends it, and holds the shared folders'
  // mounts until it has exited: kill whole trees and wait for them, so that
  // a stopped VM holds nothing (a volume's quota image can be resized).
  for (pid_t p : helpers_) KillTree(p);
  helpers_.clear();
}

Attempt QemuBackend::Boot(RunContext& ctx, Accel accel, uint32_t readyTimeoutMs) {
  const VmConfig& c = ctx.config;
  const std::string& rd = dir_->path();
  // Fresh socket names per attempt: a daemon of the attempt before may
  // still hold its pid file lock while it exits.
  const std::string attempt = std::to_string(++attempts_);
  fsSock_ = rd + "/fs" + attempt + ".sock";
  rootFsSock_ = rootSource_ == RootSource::Share ? rd + "/rootfs" + attempt + ".sock" : "";
  vsockVhost_ = rd + "/vsock" + attempt + ".vhost";
  vsockUds_ = rd + "/v" + attempt + ".sock";

  // The helpers start side by side; QEMU needs all their sockets.
  const std::string fsLog = rd + "/virtiofsd.log", vsockLog = rd + "/vsock.log", qemuLog = rd + "/qemu.log";
  struct Pending {
    std::string socket;
    pid_t pid;
    std::string log;
  };
  std::vector<Pending> pending;
  auto spawn = [&](const std::vector<std::string>& argv, const std::string& socket, const std::string& log,
                   const std::vector<sock_filter>* filter) {
    const pid_t pid = SpawnHelper(argv, log, -1, filter);
    helpers_.push_back(pid);
    pending.push_back({socket, pid, log});
  };
  spawn(VirtiofsdArgs(c, treeDir_, fsSock_, ShareCaching::Coherent), fsSock_, fsLog, &shareFilter_);
  if (!rootFsSock_.empty())
    spawn(VirtiofsdArgs(c, rootDir_, rootFsSock_, ShareCaching::Immutable), rootFsSock_, rd + "/virtiofsd-root.log",
          &shareFilter_);
  spawn({c.vsockDaemonPath, "--vm", "guest-cid=3,socket=" + vsockVhost_ + ",uds-path=" + vsockUds_}, vsockVhost_,
        vsockLog, nullptr);
  for (const Pending& p : pending) WaitForSocket(p.socket, p.pid, p.log);

  VsockBridge bridge(vsockUds_);
  ControlChannel control(bridge.GuestToHostPath(kControlPort));
  if (!c.agentSocketPath.empty()) bridge.AddHostToGuest(kExecPort, c.agentSocketPath);
  if (!c.agentFsSocketPath.empty()) bridge.AddHostToGuest(kFsPort, c.agentFsSocketPath);
  if (!c.forwardSocketPath.empty()) bridge.AddHostToGuest(kForwardPort, c.forwardSocketPath);
  for (const VsockPort& p : c.vsock) {
    if (p.listen) bridge.AddHostToGuest(p.port, p.socketPath);
    else bridge.AddGuestToHost(p.port, p.socketPath);
  }

  ConsoleSink console(consoleFifo_, consolePath_, c.consoleLimitBytes);
  Fd guestLink = net_->HasNetwork() ? net_->NewGuestLink() : Fd();
  const QemuEndpoints endpoints{consoleFifo_, fsSock_, rootFsSock_, vsockVhost_, guestLink.valid()};
  const std::optional<long> tscKhz = accel == Accel::Tcg ? ParseTscKhz(ReadProcFile("/proc/cpuinfo")) : std::nullopt;
  const pid_t qemu = SpawnHelper(QemuArgs(c, accel, endpoints, tscKhz), qemuLog, guestLink.get());
  guestLink.reset();
  ctx.events.Send({{"event", "booting"}, {"accel", AccelName(accel)}, {"pid", qemu}});

  Attachments attachments(treeDir_, ctx.events);
  Attempt at;
  const int64_t readyDeadline = NowMs() + readyTimeoutMs;
  int64_t stopDeadline = -1;
  bool controlOpen = true, qemuRunning = true;
  while (qemuRunning) {
    std::vector<pollfd> fds = {{signals_.get(), POLLIN, 0}};
    if (controlOpen) fds.push_back({ctx.controlFd, POLLIN, 0});
    control.AddPollFds(fds);
    bridge.AddPollFds(fds);
    console.AddPollFds(fds);
    int64_t next = -1;
    for (int64_t deadline : {at.ready ? -1 : readyDeadline, stopDeadline, console.NextDrainAt()})
      if (deadline >= 0) next = next < 0 ? deadline : std::min(next, deadline);
    const int timeout = next < 0 ? -1 : static_cast<int>(std::max<int64_t>(0, next - NowMs()));
    if (poll(fds.data(), fds.size(), timeout) < 0 && errno != EINTR) ThrowErrno("INTERNAL", "poll");

    if (fds[0].revents & POLLIN) {
      signalfd_siginfo si;
      while (read(signals_.get(), &si, sizeof si) == sizeof si) {
        if (si.ssi_signo != SIGCHLD) {
          at.terminated = true;
          kill(qemu, SIGKILL);
        }
      }
      int status;
      if (waitpid(qemu, &status, WNOHANG) == qemu) {
        at.qemuStatus = status;
        qemuRunning = false;
      }
    }
    if (controlOpen && PollEvents(fds, ctx.controlFd)) {
      std::vector<AddonCommand> commands;
      if (!addon_->Read(commands)) {
        controlOpen = false;  // the addon went away: treat as stop
        commands.push_back(AddonCommand{});
      }
      for (const AddonCommand& cmd : commands) {
        if (cmd.kind == AddonCommand::Kind::Verdict) {
          net_->Verdict(cmd.id, cmd.allowed);
          continue;
        }
        if (cmd.kind == AddonCommand::Kind::Attach) {
          attachments.Request(cmd, control, at.ready && !at.stopped);
          continue;
        }
        at.stopped = true;
        if (at.ready && cmd.graceMs > 0 && control.RequestPowerOff()) {
          if (stopDeadline < 0) stopDeadline = NowMs() + cmd.graceMs;
        } else {
          kill(qemu, SIGKILL);
        }
      }
    }
    control.Handle(fds, at.report);
    attachments.TakeReplies(at.report);
    if (at.report.ready && !at.ready) {
      at.ready = true;
      ctx.events.Send({{"event", "ready"}});
    }
    bridge.Handle(fds);
    console.Handle(fds);
    const int64_t now = NowMs();
    if (!at.ready && now >= readyDeadline && !at.bootTimedOut) {
      at.bootTimedOut = true;
      kill(qemu, SIGKILL);
    }
    if (stopDeadline >= 0 && now >= stopDeadline && !at.forced) {
      at.forced = true;
      kill(qemu, SIGKILL);
    }
  }
  console.Drain();
  // vhost-user daemons end when QEMU disconnects; make sure they did.
  KillHelpers();
  bridge.Close();
  return at;
}

void QemuBackend::Run(RunContext& ctx) {
  const VmConfig& c = ctx.config;
  sigset_t mask;
  sigemptyset(&mask);
  for (int s : {SIGCHLD, SIGTERM, SIGINT, SIGHUP}) sigaddset(&mask, s);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  signals_ = Fd(signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK));

  RunDir dir;
  dir_ = &dir;
  const std::string& rd = dir.path();
  treeDir_ = rd + "/fs";
  rootDir_ = rd + "/root";
  consolePath_ = c.consolePath.empty() ? rd + "/console.log" : c.consolePath;
  consoleFifo_ = rd + "/console";
  struct Cleanup {
    QemuBackend* self;
    ~Cleanup() {
      self->KillHelpers();
      UnmountSharedTree(self->treeDir_);
      UnmountSharedTree(self->rootDir_);
    }
  } cleanup{this};
  // A read-only root folder never changes while VMs run: it gets a share
  // server of its own that lets the guest cache it (see BindRootShare).
  rootSource_ = c.rootDisk ? RootSource::Disk : c.rootReadOnly ? RootSource::Share : RootSource::Tree;
  BuildSharedTree(c, treeDir_, rootSource_);
  if (rootSource_ == RootSource::Share) BindRootShare(c, rootDir_);
  shareFilter_ = ShareServerFilter();
  // Published ports are bound before the boot: a taken one fails the start.
  net::NetService net(c, ctx.events);
  net_ = &net;
  net.Start();
  AddonControl addon(ctx.controlFd);
  addon_ = &addon;

  Accel accel = c.accel;
  std::string reason;
  if (accel == Accel::Kvm && !KvmUsable())
    throw RunnerError("KVM_UNAVAILABLE",
                      "accel \"kvm\" was asked for but /dev/kvm cannot be opened for reading and writing: load the "
                      "kvm module, add your user to the kvm group (sudo usermod -aG kvm $USER, then log in again), "
                      "or use accel \"auto\" / \"tcg\"");
  if (accel == Accel::Auto) {
    const std::string cached = ReadAccelCache(c.accelCachePath);
    if (!KvmUsable()) {
      accel = Accel::Tcg;
      reason = "/dev/kvm is missing or not accessible";
    } else if (cached == "tcg") {
      accel = Accel::Tcg;
      reason = "an earlier KVM boot failed on this host (cached in " + c.accelCachePath + ")";
    } else {
      accel = Accel::Kvm;
    }
  }
  const bool probing = c.accel == Accel::Auto && accel == Accel::Kvm;
  Attempt at = Boot(ctx, accel, probing ? std::min(kKvmProbeMs, c.bootTimeoutMs) : c.bootTimeoutMs);
  if (probing && !at.ready && !at.stopped && !at.terminated) {
    // The KVM boot never reached the agent: this host's KVM can't run a
    // stock guest kernel (PVM does this). Remember, and boot under TCG.
    reason = "KVM could not boot the guest: " + FileTail(rd + "/qemu.log", 300);
    WriteAccelCache(c.accelCachePath, "tcg");
    accel = Accel::Tcg;
    ctx.events.Send({{"event", "accel"}, {"accel", "tcg"}, {"reason", reason}});
    at = Boot(ctx, accel, c.bootTimeoutMs);
  } else if (probing && at.ready) {
    WriteAccelCache(c.accelCachePath, "kvm");
  } else if (!reason.empty()) {
    ctx.events.Send({{"event", "accel"}, {"accel", "tcg"}, {"reason", reason}});
  }

  const std::string consoleTail = FileTail(consolePath_, 4000);
  if (at.terminated) return;  // nobody is listening any more
  if (at.report.exited) {
    nlohmann::json ev = {{"event", "exit"}, {"stopped", at.stopped}, {"forced", at.forced}};
    if (at.report.signal) ev["signal"] = at.report.signal;
    else ev["code"] = at.report.code;
    ctx.events.Send(ev);
  } else if (at.stopped) {
    ctx.events.Send({{"event", "exit"}, {"stopped", true}, {"forced", at.forced}});
  } else if (!at.report.error.empty()) {
    ctx.events.Send({{"event", "error"}, {"code", "GUEST_SETUP_FAILED"}, {"message", at.report.error},
                     {"console", consoleTail}});
  } else if (at.bootTimedOut) {
    ctx.events.Send({{"event", "error"}, {"code", "BOOT_TIMEOUT"},
                     {"message", "the guest did not start within " + std::to_string(c.bootTimeoutMs) + " ms"},
                     {"console", consoleTail}});
  } else if (!WIFEXITED(at.qemuStatus) || WEXITSTATUS(at.qemuStatus) != 0) {
    ctx.events.Send({{"event", "error"}, {"code", "VMM_FAILED"},
                     {"message", "QEMU failed: " + FileTail(rd + "/qemu.log", 2000)}, {"console", consoleTail}});
  } else {
    const size_t panic = consoleTail.rfind("Kernel panic");
    const std::string why = panic != std::string::npos
                                ? consoleTail.substr(panic, consoleTail.find('\n', panic) - panic)
                                : "the guest stopped without reporting an exit status";
    ctx.events.Send({{"event", "error"}, {"code", "GUEST_CRASHED"}, {"message", why}, {"console", consoleTail}});
  }
}

}  // namespace

Backend* NewQemuBackend() { return new QemuBackend(); }

}  // namespace krunbox
