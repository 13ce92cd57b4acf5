// krunbox-agent: the guest's PID 1 (static binary in the initramfs).
//
// Boot: mount /dev, /proc, /sys; load the virtio/virtio-fs/vsock modules;
// dial the runner on vsock (host CID 2, port 1024) and say "ready"; mount
// the VM's virtio-fs tree; build the workload's root (bind, or overlayfs
// with a tmpfs upper when the host folder is read-only); mount the shares;
// run the command; report "exit N" / "signal N"; power off. Host requests
// ("poweroff") arrive on the same connection.
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
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
// clang-format off
#include <linux/vm_sockets.h>
// clang-format on

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace {

constexpr const char* kTreeDir = "/run/krunbox";
constexpr const char* kNewRoot = "/newroot";
constexpr int kStopGraceMs = 3000;

struct SetupError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

[[noreturn]] void Fail(const std::string& what) { throw SetupError(what + ": " + strerror(errno)); }

void Log(const std::string& msg) {
  const std::string line = "krunbox-agent: " + msg + "\n";
  (void)!write(2, line.data(), line.size());
}

bool WriteAll(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = write(fd, s.data() + off, s.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

void MkdirP(const std::string& path) {
  std::string cur;
  std::stringstream ss(path);
  std::string part;
  while (std::getline(ss, part, '/')) {
    if (part.empty()) continue;
    cur += "/" + part;
    if (mkdir(cur.c_str(), 0755) != 0 && errno != EEXIST) Fail("mkdir " + cur);
  }
}

void Mount(const char* src, const std::string& target, const char* type, unsigned long flags, const char* data) {
  if (mount(src, target.c_str(), type, flags, data) != 0) Fail(std::string("mount ") + type + " at " + target);
}

// --- vsock ----------------------------------------------------------------

int VsockSocket() {
  int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) Fail("vsock socket");
  return fd;
}

int VsockConnect(uint32_t port) {
  int fd = VsockSocket();
  sockaddr_vm addr{};
  addr.svm_family = AF_VSOCK;
  addr.svm_cid = VMADDR_CID_HOST;
  addr.svm_port = port;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

int VsockListen(uint32_t port) {
  int fd = VsockSocket();
  sockaddr_vm addr{};
  addr.svm_family = AF_VSOCK;
  addr.svm_cid = VMADDR_CID_ANY;
  addr.svm_port = port;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(fd, 16) != 0) Fail("vsock listen");
  return fd;
}

// Copies stdin -> sock and sock -> stdout until the socket side ends. The
// end of stdin is not passed on as a half-close: vsock transports (vhost
// and vhost-user alike) treat a shutdown as the end of the connection and
// drop what the peer had not yet sent.
int Bridge(int sock) {
  bool inOpen = true;
  char buf[65536];
  for (;;) {
    pollfd fds[2] = {{sock, POLLIN, 0}, {0, static_cast<short>(inOpen ? POLLIN : 0), 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return 1;
    }
    if (fds[0].revents) {
      ssize_t n = read(sock, buf, sizeof buf);
      if (n <= 0) return 0;
      if (!WriteAll(1, std::string(buf, static_cast<size_t>(n)))) return 1;
    }
    if (inOpen && fds[1].revents) {
      ssize_t n = read(0, buf, sizeof buf);
      if (n <= 0) {
        inOpen = false;
      } else if (!WriteAll(sock, std::string(buf, static_cast<size_t>(n)))) {
        return 1;
      }
    }
  }
}

int VsockTool(const std::string& mode, uint32_t port) {
  if (mode == "vsock-connect") {
    int fd = VsockConnect(port);
    if (fd < 0) {
      perror("vsock connect");
      return 1;
    }
    return Bridge(fd);
  }
  int l = VsockListen(port);
  if (mode == "vsock-listen") {
    int c = accept4(l, nullptr, nullptr, SOCK_CLOEXEC);
    close(l);
    return c < 0 ? 1 : Bridge(c);
  }
  for (;;) {  // vsock-echo
    int c = accept4(l, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) continue;
    char buf[65536];
    ssize_t n;
    while ((n = read(c, buf, sizeof buf)) > 0)
      if (!WriteAll(c, std::string(buf, static_cast<size_t>(n)))) break;
    close(c);
  }
}

// --- boot -----------------------------------------------------------------

void LoadModules() {
  std::ifstream order("/lib/modules/order");
  std::string name;
  while (std::getline(order, name)) {
    if (name.empty()) continue;
    const std::string path = "/lib/modules/" + name;
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) Fail("open " + path);
    if (syscall(SYS_finit_module, fd, "", 0) != 0 && errno != EEXIST) Fail("load module " + name);
    close(fd);
  }
}

int DialHost(uint32_t port) {
  // The virtio-vsock device may still be probing right after module load.
  for (int i = 0; i < 500; i++) {
    int fd = VsockConnect(port);
    if (fd >= 0) return fd;
    usleep(10000);
  }
  Fail("connect to the host on vsock port " + std::to_string(port));
}

nlohmann::json ReadConfig() {
  std::ifstream in(std::string(kTreeDir) + "/config.json");
  if (!in) Fail("open config.json");
  return nlohmann::json::parse(in);
}

void BuildRoot(const nlohmann::json& cfg) {
  const std::string tree = kTreeDir;
  MkdirP(kNewRoot);
  if (cfg.value("rootReadOnly", false)) {
    // The host folder stays untouched: writes land in a tmpfs upper layer.
    // virtio-fs submounts are automount points, which overlayfs refuses as
    // a layer; a bind mount resolves it to the mounted root.
    MkdirP("/lower");
    Mount((tree + "/root").c_str(), "/lower", nullptr, MS_BIND | MS_REC, nullptr);
    MkdirP("/overlay");
    Mount("tmpfs", "/overlay", "tmpfs", 0, "mode=0755");
    MkdirP("/overlay/upper");
    MkdirP("/overlay/work");
    const std::string opts = "lowerdir=/lower,upperdir=/overlay/upper,workdir=/overlay/work";
    Mount("overlay", kNewRoot, "overlay", 0, opts.c_str());
  } else {
    Mount((tree + "/root").c_str(), kNewRoot, nullptr, MS_BIND | MS_REC, nullptr);
  }
  for (const auto& m : cfg.at("mounts")) {
    const std::string target = std::string(kNewRoot) + m.at("target").get<std::string>();
    MkdirP(target);
    Mount((tree + "/" + m.at("source").get<std::string>()).c_str(), target, nullptr, MS_BIND | MS_REC, nullptr);
    if (m.value("readOnly", false))
      Mount(nullptr, target, nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY, nullptr);
  }
  for (const char* d : {"/proc", "/sys", "/dev"}) MkdirP(std::string(kNewRoot) + d);
  Mount("proc", std::string(kNewRoot) + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr);
  Mount("sysfs", std::string(kNewRoot) + "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr);
  Mount("devtmpfs", std::string(kNewRoot) + "/dev", "devtmpfs", MS_NOSUID, nullptr);
}

pid_t StartWorkload(const nlohmann::json& cfg) {
  std::vector<std::string> args = cfg.at("command").get<std::vector<std::string>>();
  std::vector<std::string> env = cfg.value("env", std::vector<std::string>{});
  const std::string workdir = cfg.value("workdir", "/");
  const pid_t pid = fork();
  if (pid < 0) Fail("fork");
  if (pid > 0) return pid;
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  setsid();
  // The console has no input side: reading it would block forever.
  int devnull = open("/dev/null", O_RDONLY);
  if (devnull >= 0) dup2(devnull, 0);
  if (chroot(kNewRoot) != 0 || chdir("/") != 0) {
    perror("krunbox-agent: chroot");
    _exit(127);
  }
  if (chdir(workdir.c_str()) != 0) {
    fprintf(stderr, "krunbox-agent: workdir %s: %s\n", workdir.c_str(), strerror(errno));
    _exit(127);
  }
  std::vector<char*> argv, envp;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  environ = envp.data();  // execvp searches the workload's PATH
  if (!getenv("PATH")) setenv("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", 1);
  execvp(argv[0], argv.data());
  fprintf(stderr, "krunbox-agent: %s: %s\n", argv[0], strerror(errno));
  _exit(errno == ENOENT ? 127 : 126);
}

// Reaps every child (orphans re-parent to PID 1) until the workload ends or
// the host asks to power off; returns the workload's wait status.
int Supervise(pid_t workload, int control) {
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGCHLD);
  int sfd = signalfd(-1, &mask, SFD_CLOEXEC);
  std::string buf;
  long long killAt = -1;
  for (;;) {
    int status;
    pid_t p;
    while ((p = waitpid(-1, &status, WNOHANG)) > 0)
      if (p == workload) return status;
    pollfd fds[2] = {{sfd, POLLIN, 0}, {control, POLLIN, 0}};
    const int n = poll(fds, control >= 0 ? 2 : 1, killAt >= 0 ? kStopGraceMs : -1);
    if (n == 0 && killAt >= 0) {
      kill(workload, SIGKILL);
      kill(-workload, SIGKILL);
    }
    if (fds[0].revents) {
      signalfd_siginfo si;
      (void)!read(sfd, &si, sizeof si);
    }
    if (control >= 0 && fds[1].revents) {
      char chunk[256];
      ssize_t r = read(control, chunk, sizeof chunk);
      if (r <= 0) {
        control = -1;  // the host side is gone; nothing to report to
        continue;
      }
      buf.append(chunk, static_cast<size_t>(r));
      if (buf.find("poweroff\n") != std::string::npos && killAt < 0) {
        // The child may not have made its process group yet.
        kill(workload, SIGTERM);
        kill(-workload, SIGTERM);
        killAt = 1;
      }
      if (buf.size() > 4096) buf.clear();
    }
  }
}

[[noreturn]] void PowerOff() {
  sync();
  // With reboot=t and QEMU's -no-reboot, a reboot ends the VM at once.
  reboot(RB_AUTOBOOT);
  for (;;) pause();
}

[[noreturn]] void RunInit() {
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGCHLD);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  int control = -1;
  try {
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
    LoadModules();
    control = DialHost(1024);
    WriteAll(control, "ready\n");
    MkdirP(kTreeDir);
    // Read-write: the host decides what is read-only, per share.
    Mount("krunbox", kTreeDir, "virtiofs", 0, nullptr);
    const nlohmann::json cfg = ReadConfig();
    BuildRoot(cfg);
    const int status = Supervise(StartWorkload(cfg), control);
    const std::string report = WIFSIGNALED(status) ? "signal " + std::to_string(WTERMSIG(status))
                                                   : "exit " + std::to_string(WEXITSTATUS(status));
    if (control >= 0) WriteAll(control, report + "\n");
  } catch (const std::exception& e) {
    Log(e.what());
    if (control >= 0) WriteAll(control, std::string("error ") + e.what() + "\n");
  }
  PowerOff();
}

}  // namespace

int main(int argc, char** argv) {
  if (getpid() == 1) RunInit();
  if (argc == 3) {
    const std::string mode = argv[1];
    if (mode == "vsock-connect" || mode == "vsock-listen" || mode == "vsock-echo") {
      try {
        return VsockTool(mode, static_cast<uint32_t>(strtoul(argv[2], nullptr, 10)));
      } catch (const std::exception& e) {
        Log(e.what());
        return 1;
      }
    }
  }
  fprintf(stderr, "usage: krunbox-agent vsock-connect|vsock-listen|vsock-echo PORT\n");
  return 2;
}
