// krunbox-agent: the guest's PID 1 in the qemu backend (static binary in
// the initramfs), and `krunbox-agent --under-init`, the workload of libkrun's
// own init in the libkrun backend.
//
// Boot: (as PID 1) mount /dev, /proc, /sys and load the virtio/virtio-fs/
// vsock modules; bring lo up; dial the runner on vsock (host CID 2, port
// 1024); mount a tmpfs at /run and the VM's virtio-fs tree in it; set up
// eth0 when the VM has a network (network.h); build the workload's root
// and mount the shares (root.h); serve execs on vsock port 1025
// (exec_server.h), file operations on 1026 (fs_server.h) and connections to
// guest ports on 1027 (forward.h), and say "ready". With a configured
// command it runs that too, reports "exit N" / "signal N" when it ends and
// powers off (under libkrun: exits with the command's status); without one
// it serves until the host says "poweroff". The host may also ask it to
// mount a volume attached to the running VM ("mount <id> <json>").
//
// Run as any other PID, it is a small vsock tool for workloads and tests:
//   krunbox-agent vsock-connect PORT   stdio <-> host port PORT
//   krunbox-agent vsock-listen PORT    stdio <-> first connection on PORT
//   krunbox-agent vsock-echo PORT      echo every connection on PORT back
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "agent/setup.h"
#include "agent/exec_server.h"
#include "agent/fs_server.h"
#include "agent/forward.h"
#include "agent/network.h"
#include "agent/process.h"
#include "agent/root.h"
#include "agent/vsock.h"
#include "common/agent_ports.h"
#include "common/guest_config.h"

namespace agent {
namespace {

using krunbox::GuestConfig;
using krunbox::kControlPort;
using krunbox::kExecPort;
using krunbox::kFsPort;
using krunbox::kForwardPort;

constexpr int kStopGraceMs = 3000;

int DialHost(uint32_t port) {
  // The virtio-vsock device may still be probing right after module load.
  for (int i = 0; i < 500; i++) {
    int fd = VsockConnect(port);
    if (fd >= 0) return fd;
    usleep(10000);
  }
  Fail("connect to the host on vsock port " + std::to_string(port));
}

GuestConfig ReadConfig() {
  std::ifstream in(std::string(kTreeDir) + "/config.json");
  if (!in) Fail("open config.json");
  std::stringstream text;
  text << in.rdbuf();
  return krunbox::GuestConfigFromJson(text.str());
}

// "mount <id> <json>" lines carry two paths.
constexpr size_t kMaxControlLine = 16 << 10;

// The host's "mount <id> <GuestMount JSON>" (a volume attached to the
// running VM): mounts it in the workload's root; returns the answer line.
std::string MountRequest(const std::string& request) {
  const size_t space = request.find(' ');
  const std::string id = request.substr(0, space);
  try {
    if (space == std::string::npos) throw SetupError("malformed mount request");
    MountInRoot(krunbox::GuestMountFromJson(request.substr(space + 1)));
    return "mounted " + id + "\n";
  } catch (const std::exception& e) {
    std::string why = e.what();
    for (char& c : why)
      if (c == '\n') c = ' ';
    return "mount-failed " + id + " " + why + "\n";
  }
}

// The one event loop of PID 1: reaps every child (orphans re-parent to us),
// serves execs, and watches the host's control line. Returns the configured
// command's wait status, or nullopt when there was none and the host asked
// to power off.
std::optional<int> Serve(ExecServer& execs, FsServer& files, ForwardServer& forwards, pid_t command, int control) {
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGCHLD);
  const int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
  std::string buffer;
  bool stopping = false;
  std::optional<int> commandStatus;
  for (;;) {
    int status;
    pid_t p;
    while ((p = waitpid(-1, &status, WNOHANG)) > 0) {
      if (p == command) commandStatus = status;
      else if (!execs.OnExit(p, status)) files.OnExit(p);
    }
    if (commandStatus && !stopping) return commandStatus;
    if (stopping && (command < 0 || commandStatus) && execs.Idle()) return commandStatus;

    std::vector<pollfd> fds = {{sfd, POLLIN, 0}};
    if (control >= 0) fds.push_back({control, POLLIN, 0});
    execs.AddPollFds(fds);
    files.AddPollFds(fds);
    forwards.AddPollFds(fds);
    int timeout = stopping ? kStopGraceMs : execs.NextTimeoutMs();
    const int n = poll(fds.data(), fds.size(), timeout);
    if (n == 0 && stopping) {
      // The grace period is over: nothing may delay the power-off.
      if (command > 0) kill(-command, SIGKILL), kill(command, SIGKILL);
      execs.KillAll(SIGKILL);
    }
    signalfd_siginfo si;
    while (read(sfd, &si, sizeof si) == sizeof si) {
    }
    if (control >= 0 && fds[1].revents) {
      char chunk[4096];
      const ssize_t r = read(control, chunk, sizeof chunk);
      if (r <= 0) {
        close(control);  // the host side is gone; nothing to report to
        control = -1;
      } else {
        buffer.append(chunk, static_cast<size_t>(r));
        size_t nl;
        while ((nl = buffer.find('\n')) != std::string::npos) {
          const std::string line = buffer.substr(0, nl);
          buffer.erase(0, nl + 1);
          if (line == "poweroff" && !stopping) {
            stopping = true;
            // The command may not have made its process group yet.
            if (command > 0) kill(command, SIGTERM), kill(-command, SIGTERM);
            execs.KillAll(SIGTERM);
            files.KillAll(SIGKILL);  // file workers hold nothing worth a grace period
          } else if (line.rfind("mount ", 0) == 0 && !stopping) {
            WriteAll(control, MountRequest(line.substr(6)));
          }
        }
        if (buffer.size() > kMaxControlLine) buffer.clear();
      }
    }
    execs.Handle(fds);
    files.Handle(fds);
    forwards.Handle(fds);
    execs.ExpireTimeouts();
  }
}

// As PID 1, a reboot ends the VM at once (reboot=t and QEMU's -no-reboot).
// Under libkrun's init, the VM ends when the agent exits.
[[noreturn]] void PowerOff(bool pid1, int code) {
  sync();
  if (!pid1) _exit(code);
  reboot(RB_AUTOBOOT);
  for (;;) pause();
}

ExecSpec CommandSpec(const GuestConfig& cfg) {
  ExecSpec spec;
  spec.argv = cfg.command;
  spec.env = cfg.env;
  spec.cwd = cfg.workdir;
  return spec;
}

// pid1: the qemu backend's initramfs; otherwise the workload of libkrun's
// own init, which has mounted /dev, /proc and /sys and whose kernel has the
// drivers built in.
[[noreturn]] void RunInit(bool pid1) {
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGCHLD);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  // Orphans re-parent to us even when we are not PID 1.
  if (!pid1) prctl(PR_SET_CHILD_SUBREAPER, 1);
  int control = -1;
  int code = 0;
  try {
    if (pid1) {
      MkdirP("/dev");
      Mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, nullptr);
      int con = open("/dev/console", O_RDWR | O_CLOEXEC);
      if (con >= 0) {
        for (int fd = 0; fd < 3; fd++) dup2(con, fd);
        close(con);
      }
      MkdirP("/proc");
      Mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr);
      MkdirP("/sys");
      Mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr);
      LoadModules("/lib/modules/order");
    }
    BringUpLoopback();
    control = DialHost(kControlPort);
    Mount("tmpfs", kWorkDir, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755");
    MkdirP(kTreeDir);
    // Read-write: the host decides what is read-only, per share.
    Mount("krunbox", kTreeDir, "virtiofs", 0, nullptr);
    // Volumes are read in FUSE requests of at most 1 MiB: a deep readahead
    // keeps several in flight (sequential reads about 1.5x faster).
    SetReadAheadKb(kTreeDir, 4096);
    const GuestConfig cfg = ReadConfig();
    if (cfg.network) {
      if (pid1) LoadModules("/lib/modules/order.net");
      ConfigureEthernet(*cfg.network);
    }
    BuildRoot(cfg, pid1);
    if (cfg.network) ProvideResolvConf(*cfg.network, kNewRoot, cfg.rootReadOnly);
    ExecServer execs(kExecPort);
    FsServer files(kFsPort);
    ForwardServer forwards(kForwardPort);
    WriteAll(control, "ready\n");
    const ExecSpec spec = CommandSpec(cfg);
    pid_t command = -1;
    std::optional<int> status;
    if (!spec.argv.empty()) {
      // The console has no input side: reading it would block forever.
      krunbox::Fd devnull(open("/dev/null", O_RDONLY | O_CLOEXEC));
      try {
        command = Launch(spec, {devnull.get(), 1, 2});
      } catch (const LaunchError& e) {
        // As a shell would: the reason on the console, 127 for a program
        // that is not there, 126 for one that cannot run.
        Log(e.what());
        status = (e.field == "command" && e.error == ENOENT ? 127 : 126) << 8;
      }
    }
    if (!status) status = Serve(execs, files, forwards, command, control);
    std::string report = "exit 0";
    if (status) {
      report = WIFSIGNALED(*status) ? "signal " + std::to_string(WTERMSIG(*status))
                                    : "exit " + std::to_string(WEXITSTATUS(*status));
      code = WIFSIGNALED(*status) ? 128 + WTERMSIG(*status) : WEXITSTATUS(*status);
    }
    WriteAll(control, report + "\n");
  } catch (const std::exception& e) {
    Log(e.what());
    if (control >= 0) WriteAll(control, std::string("error ") + e.what() + "\n");
    code = 125;
  }
  PowerOff(pid1, code);
}

}  // namespace
}  // namespace agent

int main(int argc, char** argv) {
  if (getpid() == 1) agent::RunInit(true);
  if (argc == 2 && std::string(argv[1]) == "--under-init") agent::RunInit(false);
  if (argc == 3) {
    const std::string mode = argv[1];
    if (mode == "vsock-connect" || mode == "vsock-listen" || mode == "vsock-echo") {
      try {
        return agent::VsockTool(mode, static_cast<uint32_t>(strtoul(argv[2], nullptr, 10)));
      } catch (const std::exception& e) {
        agent::Log(e.what());
        return 1;
      }
    }
  }
  fprintf(stderr, "usage: krunbox-agent vsock-connect|vsock-listen|vsock-echo PORT\n");
  return 2;
}
