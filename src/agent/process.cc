#include "agent/process.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/openat2.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
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
  // Resolved as the chrooted process will (symlinks stay inside the root),
  // so that a missing folder is an error here, not exit 126 after fork.
  krunbox::Fd root(open(kNewRoot, O_PATH | O_DIRECTORY | O_CLOEXEC));
  open_how how{};
  how.flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
  how.resolve = RESOLVE_IN_ROOT;
  krunbox::Fd dir(static_cast<int>(syscall(SYS_openat2, root.get(), cwd.c_str(), &how, sizeof how)));
  if (dir.valid()) return;
  if (errno == ENOENT) throw SetupError("cwd \"" + cwd + "\" does not exist in the guest");
  if (errno == ENOTDIR) throw SetupError("cwd \"" + cwd + "\" is not a folder in the guest");
  throw SetupError("cwd \"" + cwd + "\": " + strerror(errno));
}

pid_t Launch(const ExecSpec& spec, int in, int out, int err) {
  std::vector<std::string> args = spec.argv, env = spec.env;
  // Until the child has called setsid(), a kill of its process group (a
  // timeout of 1 ms, a SIGNAL frame) would miss it: it closes its end of
  // this pipe once it has its group, and only then do we return.
  int grouped[2];
  if (pipe2(grouped, O_CLOEXEC) != 0) return -1;
  const pid_t pid = fork();
  if (pid != 0) {  // parent (or -1)
    close(grouped[1]);
    char c;
    while (pid > 0 && read(grouped[0], &c, 1) < 0 && errno == EINTR) {
    }
    close(grouped[0]);
    return pid;
  }
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  setsid();
  close(grouped[1]);
  dup2(in, 0);
  dup2(out, 1);
  dup2(err, 2);
  close_range(3, ~0U, 0);
  auto die = [](const std::string& what, int code) {
    const std::string msg = "krunbox: " + what + ": " + strerror(errno) + "\n";
    (void)!write(2, msg.data(), msg.size());
    _exit(code);
  };
  if (chroot(kNewRoot) != 0 || chdir("/") != 0) die("chroot", 126);
  if (setgroups(0, nullptr) != 0 || setgid(spec.gid) != 0 || setuid(spec.uid) != 0) die("switching user", 126);
  if (chdir(spec.cwd.c_str()) != 0) die("cwd " + spec.cwd, 126);
  std::vector<char*> argv, envp;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  environ = envp.data();  // execvp searches the workload's PATH
  if (!getenv("PATH")) setenv("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", 1);
  execvp(argv[0], argv.data());
  die(argv[0], errno == ENOENT ? 127 : 126);
  return -1;
}

}  // namespace agent
