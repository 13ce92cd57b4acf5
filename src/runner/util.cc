#include "runner/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <linux/capability.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "runner/share_filter.h"

namespace krunbox {

namespace {
// Per helper process: enough for a guest that works through a quarter of a
// million files, far below what a host's file table holds.
constexpr rlim_t kHelperMaxFds = 1 << 18;
}  // namespace

void ThrowErrno(const std::string& code, const std::string& what) {
  throw RunnerError(code, what + ": " + strerror(errno));
}

std::string FileTail(const std::string& path, size_t max) {
  Fd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return "";
  struct stat st;
  if (fstat(fd.get(), &st) != 0) return "";
  const off_t start = st.st_size > static_cast<off_t>(max) ? st.st_size - static_cast<off_t>(max) : 0;
  std::string out(static_cast<size_t>(st.st_size - start), '\0');
  ssize_t n = pread(fd.get(), out.data(), out.size(), start);
  out.resize(n > 0 ? static_cast<size_t>(n) : 0);
  return out;
}

pid_t SpawnHelper(const std::vector<std::string>& argv, const std::string& logPath, int passFd,
                  const std::vector<sock_filter>* filter) {
  std::vector<char*> cargv;
  for (const std::string& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  const pid_t parent = getpid();
  // The guest decides how many files a helper keeps open (virtiofsd holds
  // one per inode the guest has looked up): at most what the host program
  // itself may hold, and at most kHelperMaxFds.
  rlimit files{};
  getrlimit(RLIMIT_NOFILE, &files);
  files.rlim_cur = files.rlim_max = std::min<rlim_t>(files.rlim_max, kHelperMaxFds);
  // The child only calls async-signal-safe functions before exec, so fork()
  // is safe while the network thread runs.
  const pid_t pid = fork();
  if (pid < 0) ThrowErrno("SPAWN_FAILED", "fork " + argv[0]);
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    signal(SIGPIPE, SIG_DFL);
    // Without CAP_SYS_RESOURCE the helper cannot raise that limit again (a
    // share server running as root could otherwise raise its own). Dropping
    // it fails only where we never had it.
    if (setrlimit(RLIMIT_NOFILE, &files) != 0) _exit(127);
    prctl(PR_CAPBSET_DROP, CAP_SYS_RESOURCE, 0, 0, 0);
    int in = open("/dev/null", O_RDONLY);
    int log = open(logPath.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (in < 0 || log < 0) _exit(127);
    dup2(in, 0);
    dup2(log, 1);
    dup2(log, 2);
    if (passFd == 3) fcntl(3, F_SETFD, 0);
    else if (passFd >= 0) dup2(passFd, 3);
    close_range(passFd >= 0 ? 4 : 3, ~0U, 0);
    if (filter && !InstallFilter(*filter)) {
      const char msg[] = "krunbox-runner: cannot install the seccomp filter\n";
      (void)!write(2, msg, sizeof msg - 1);
      _exit(127);
    }
    execv(cargv[0], cargv.data());
    const char msg[] = "krunbox-runner: exec failed\n";
    (void)!write(2, msg, sizeof msg - 1);
    _exit(127);
  }
  return pid;
}

std::string ReadProcFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::vector<pid_t> Descendants(pid_t pid) {
  std::vector<pid_t> found;
  const std::string tasks = "/proc/" + std::to_string(pid) + "/task";
  DIR* d = opendir(tasks.c_str());
  if (!d) return found;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::istringstream children(ReadProcFile(tasks + "/" + e->d_name + "/children"));
    for (pid_t child; children >> child;) {
      found.push_back(child);
      for (pid_t grandchild : Descendants(child)) found.push_back(grandchild);
    }
  }
  closedir(d);
  return found;
}

void KillTree(pid_t child, int timeoutMs) {
  std::vector<Fd> exited;  // pidfds: readable once their process has exited
  for (pid_t d : Descendants(child)) {
    Fd pidfd(static_cast<int>(syscall(SYS_pidfd_open, d, 0)));
    if (pidfd.valid()) exited.push_back(std::move(pidfd));
    kill(d, SIGKILL);
  }
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  const int64_t deadline = NowMs() + timeoutMs;
  for (const Fd& pidfd : exited) {
    pollfd p{pidfd.get(), POLLIN, 0};
    while (poll(&p, 1, static_cast<int>(std::max<int64_t>(0, deadline - NowMs()))) < 0 && errno == EINTR) {
    }
  }
}

static sockaddr_un UnixAddr(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path)
    throw RunnerError("SETUP_FAILED", "socket path too long: " + path);
  memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

Fd ListenUnix(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode))
      throw RunnerError("SETUP_FAILED", path + " exists and is not a socket; remove it or choose another path");
    unlink(path.c_str());
  }
  Fd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) ThrowErrno("SETUP_FAILED", "socket");
  sockaddr_un addr = UnixAddr(path);
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    ThrowErrno("SETUP_FAILED", "bind " + path);
  if (listen(fd.get(), 64) != 0) ThrowErrno("SETUP_FAILED", "listen " + path);
  return fd;
}

Fd ConnectUnix(const std::string& path) {
  Fd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return fd;
  sockaddr_un addr = UnixAddr(path);
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) fd.reset();
  return fd;
}

}  // namespace krunbox
