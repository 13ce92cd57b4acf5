#include "agent/process.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/openat2.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <optional>
#include <sstream>

#include "agent/setup.h"

namespace agent {

namespace {

// A numeric uid or gid: 0 to 2^32-2 ((uid_t)-1 means "leave unchanged" to
// setuid() and friends). Anything longer or larger is refused, never
// truncated: 4294967296 must not become 0, root.
std::optional<uint32_t> ParseId(const std::string& s) {
  if (s.empty() || s.size() > 10 || s.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
  const unsigned long long v = std::stoull(s);
  if (v > 0xfffffffeULL) return std::nullopt;
  return static_cast<uint32_t>(v);
}

bool AllDigits(const std::string& s) { return !s.empty() && s.find_first_not_of("0123456789") == std::string::npos; }

std::string CwdProblem(const std::string& cwd, int error) {
  if (error == ENOENT) return "cwd \"" + cwd + "\" does not exist in the guest";
  if (error == ENOTDIR) return "cwd \"" + cwd + "\" is not a folder in the guest";
  return "cwd \"" + cwd + "\": " + strerror(error);
}

}  // namespace

void ResolveUser(const std::string& user, ExecSpec& spec) {
  if (user.empty()) return;
  const size_t colon = user.find(':');
  const std::string name = user.substr(0, colon);
  const std::string range = " is not a valid id (0 to 4294967294)";
  bool found = false;
  if (AllDigits(name)) {
    const std::optional<uint32_t> uid = ParseId(name);
    if (!uid) throw SetupError("uid " + name + range);
    spec.uid = spec.gid = *uid;
    found = true;
  }
  std::ifstream passwd(std::string(kNewRoot) + "/etc/passwd");
  std::string line;
  while (std::getline(passwd, line)) {
    std::vector<std::string> f;
    std::stringstream ss(line);
    std::string field;
    while (std::getline(ss, field, ':')) f.push_back(field);
    if (f.size() < 6) continue;
    const std::optional<uint32_t> uid = ParseId(f[2]), gid = ParseId(f[3]);
    if (!uid || !gid) continue;  // the image's own entry is no better than a user's
    if (f[0] == name || (found && *uid == spec.uid)) {
      spec.uid = *uid;
      spec.gid = *gid;
      found = true;
      break;
    }
  }
  if (!found) throw SetupError("user \"" + name + "\" is not in the image's /etc/passwd; use a name from it or a numeric uid");
  if (colon != std::string::npos) {
    const std::string g = user.substr(colon + 1);
    const std::optional<uint32_t> gid = ParseId(g);
    if (!gid) throw SetupError("group in \"" + user + "\" must be a numeric gid from 0 to 4294967294");
    spec.gid = *gid;
  }
}

void CheckCwd(const std::string& cwd) {
  // Resolved as the chrooted process would (symlinks stay inside the root).
  krunbox::Fd root(open(kNewRoot, O_PATH | O_DIRECTORY | O_CLOEXEC));
  open_how how{};
  how.flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
  how.resolve = RESOLVE_IN_ROOT;
  krunbox::Fd dir(static_cast<int>(syscall(SYS_openat2, root.get(), cwd.c_str(), &how, sizeof how)));
  if (!dir.valid()) throw SetupError(CwdProblem(cwd, errno));
}

Terminal OpenTerminal(uint16_t cols, uint16_t rows, uid_t uid) {
  // The devpts instance the workload sees at /dev/pts, so that its
  // ttyname() finds the terminal. O_NOCTTY: the agent leads a session, and
  // a terminal must never become its own.
  const std::string ptmx = std::string(kNewRoot) + "/dev/pts/ptmx";
  Terminal t;
  t.master = krunbox::Fd(open(ptmx.c_str(), O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!t.master.valid()) Fail("open " + ptmx);
  int unlock = 0;
  if (ioctl(t.master.get(), TIOCSPTLCK, &unlock) != 0) Fail("unlock the terminal");
  t.slave = krunbox::Fd(ioctl(t.master.get(), TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!t.slave.valid()) Fail("open the terminal's slave side");
  if (fchown(t.slave.get(), uid, static_cast<gid_t>(-1)) != 0 || fchmod(t.slave.get(), 0620) != 0) Fail("chown the terminal");
  ResizeTerminal(t.master.get(), cols, rows);
  return t;
}

void ResizeTerminal(int master, uint16_t cols, uint16_t rows) {
  winsize size{};
  size.ws_col = cols;
  size.ws_row = rows;
  ioctl(master, TIOCSWINSZ, &size);
}

namespace {

constexpr const char* kDefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

enum class Step { kNone, kSession, kRoot, kUser, kCwd, kExec };

// Everything the child needs, prepared before clone: it shares our memory
// (and the heap's locks), so it only makes system calls. It writes back
// where it failed; we read that once it has exited.
struct Child {
  const Stdio* stdio;
  uid_t uid;
  gid_t gid;
  const char* cwd;
  std::vector<const char*> programs;  // what execve tries, in PATH order
  char* const* argv;
  char* const* envp;
  Step failed = Step::kNone;
  int error = 0;
};

// The child's stack. The agent is single-threaded and CLONE_VFORK holds it
// until the child has run its program or exited, so one stack serves all.
alignas(64) char childStack[64 * 1024];

[[noreturn]] void ChildFailed(Child* c, Step step) {
  c->error = errno;
  c->failed = step;
  _exit(127);
}

int ChildMain(void* arg) {
  Child* c = static_cast<Child*>(arg);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  if (setsid() < 0) ChildFailed(c, Step::kSession);
  const Stdio& io = *c->stdio;
  if (io.terminal >= 0) {
    if (ioctl(io.terminal, TIOCSCTTY, 0) != 0) ChildFailed(c, Step::kSession);
    for (int fd = 0; fd < 3; fd++)
      if (dup2(io.terminal, fd) < 0) ChildFailed(c, Step::kSession);
  } else if (dup2(io.in, 0) < 0 || dup2(io.out, 1) < 0 || dup2(io.err, 2) < 0) {
    ChildFailed(c, Step::kSession);
  }
  close_range(3, ~0U, 0);
  if (chroot(kNewRoot) != 0 || chdir("/") != 0) ChildFailed(c, Step::kRoot);
  // Raw system calls: glibc's wrappers would coordinate with other threads,
  // whose state here is the agent's.
  if (syscall(SYS_setgroups, 0, nullptr) != 0 || syscall(SYS_setgid, c->gid) != 0 || syscall(SYS_setuid, c->uid) != 0)
    ChildFailed(c, Step::kUser);
  if (chdir(c->cwd) != 0) ChildFailed(c, Step::kCwd);
  // execvp's search: a missing candidate moves on, a permission problem is
  // remembered, anything else stops it.
  bool denied = false;
  for (const char* program : c->programs) {
    execve(program, c->argv, c->envp);
    if (errno == EACCES) denied = true;
    else if (errno != ENOENT && errno != ENOTDIR && errno != ESTALE && errno != ENODEV && errno != ETIMEDOUT)
      ChildFailed(c, Step::kExec);
  }
  if (denied) errno = EACCES;
  ChildFailed(c, Step::kExec);
}

std::string ExecProblem(const std::string& program, const std::string& path, int error) {
  const std::string quoted = "\"" + program + "\"";
  if (error == ENOENT && program.find('/') != std::string::npos) return quoted + " does not exist in the guest";
  if (error == ENOENT) return quoted + " was not found in the guest's PATH (" + path + ")";
  if (error == EACCES) return quoted + " cannot be run: permission denied (is it an executable file?)";
  if (error == ENOEXEC) return quoted + " is not a program the guest can run (exec format error)";
  return quoted + ": " + strerror(error);
}

}  // namespace

pid_t Launch(const ExecSpec& spec, const Stdio& stdio) {
  std::vector<std::string> args = spec.argv, env = spec.env;
  std::string path = kDefaultPath;
  bool hasPath = false;
  for (const std::string& e : env)
    if (e.compare(0, 5, "PATH=") == 0) path = e.substr(5), hasPath = true;
  if (!hasPath) env.push_back(std::string("PATH=") + kDefaultPath);
  std::vector<std::string> programs;
  const std::string& name = args.at(0);
  if (name.find('/') != std::string::npos) {
    programs.push_back(name);
  } else {
    size_t start = 0;
    for (;;) {
      const size_t colon = path.find(':', start);
      const std::string dir = path.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
      programs.push_back((dir.empty() ? "." : dir) + "/" + name);
      if (colon == std::string::npos) break;
      start = colon + 1;
    }
  }
  std::vector<char*> argv, envp;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (std::string& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  Child child{&stdio, spec.uid, spec.gid, spec.cwd.c_str(), {}, argv.data(), envp.data()};
  for (const std::string& p : programs) child.programs.push_back(p.c_str());

  const pid_t pid = clone(ChildMain, childStack + sizeof childStack, CLONE_VM | CLONE_VFORK | SIGCHLD, &child);
  if (pid < 0) throw LaunchError("", errno, std::string("clone: ") + strerror(errno));
  if (child.failed == Step::kNone) return pid;
  int status;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  switch (child.failed) {
    case Step::kUser:
      throw LaunchError("user", child.error, "switching to uid " + std::to_string(spec.uid) + ", gid " + std::to_string(spec.gid) + ": " + strerror(child.error));
    case Step::kCwd:
      throw LaunchError("cwd", child.error, CwdProblem(spec.cwd, child.error));
    case Step::kExec:
      throw LaunchError("command", child.error, ExecProblem(name, path, child.error));
    case Step::kRoot:
      throw LaunchError("", child.error, std::string("chroot into the sandbox's root: ") + strerror(child.error));
    default:
      throw LaunchError("", child.error, std::string("setting up the process's session: ") + strerror(child.error));
  }
}

}  // namespace agent
