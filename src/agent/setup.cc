#include "agent/setup.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/sysmacros.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

namespace agent {

void Fail(const std::string& what) { throw SetupError(what + ": " + strerror(errno)); }

void Log(const std::string& msg) {
  const std::string line = "krunbox-agent: " + msg + "\n";
  (void)!write(2, line.data(), line.size());
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
  if (mount(src, target.c_str(), type, flags, data) != 0)
    Fail(std::string("mount ") + (type ? type : "bind") + " at " + target);
}

void SetReadAheadKb(const std::string& mountPoint, unsigned kb) {
  struct stat st;
  if (stat(mountPoint.c_str(), &st) != 0) return;
  // Submounts (every share of a virtio-fs tree) use their parent's bdi.
  const std::string knob = "/sys/class/bdi/" + std::to_string(major(st.st_dev)) + ":" +
                           std::to_string(minor(st.st_dev)) + "/read_ahead_kb";
  Fd fd(open(knob.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd.valid() || !WriteAll(fd.get(), std::to_string(kb))) Log("cannot set " + knob);
}

// `list` names modules in dependency order (scripts/build-runtime.mjs).
void LoadModules(const char* list) {
  std::ifstream order(list);
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

}  // namespace agent
