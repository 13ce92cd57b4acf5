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
#include <sstream>

#include "agent/setup.h"

namespace agent {

void ResolveUser(const std::string& user, ExecSpec& spec) {
  if (user.empty()) return;
  const size_t colon = user.find(':');
  const std::string name = user.substr(0, colon);
  auto numeric = [](const std::string& s) { return !s.empty() && s.find_first_not_of("0123456789") == std::string::npos; };
  bool found = false;
  if (numeric(name)) {
    spec.uid = static_cast<uid_t>(std::stoul(name));
    spec.gid = spec.uid;
    found = true;
  }
  std::ifstream passwd(std::string(kNewRoot) + "/etc/passwd");
  std::string line;
  while (std::getline(passwd, line)) {
    std::vector<std::string> f;
    std::stringstream ss(line);
    std::string field;
    while (std::getline(ss, field, ':')) f.push_back(field);
    if (f.size() < 6 || !numeric(f[2]) || !numeric(f[3])) continue;
    if (f[0] == name || (numeric(name) && f[2] == name)) {
      spec.uid = static_cast<uid_t>(std::stoul(f[2]));
      spec.gid = static_cast<gid_t>(std::stoul(f[3]));
      found = true;
      break;
    }
  }
  if (!found) throw SetupError("user \"" + name + "\" is not in the image's /etc/passwd; use a name from it or a numeric uid");
  if (colon != std::string::npos) {
    const std::string g = user.substr(colon + 1);
    if (!numeric(g)) throw SetupError("group in \"" + user + "\" must be a numeric gid");
    spec.gid = static_cast<gid_t>(std::stoul(g));
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
  const pid_t pid = fork();
  if (pid != 0) return pid;  // parent (or -1)
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  setsid();
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
