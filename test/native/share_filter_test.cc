#include <doctest/doctest.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "runner/share_filter.h"

using namespace krunbox;

namespace {

// Runs `probe` in a child under the share server's filter; its return value
// (an errno, 0 for success) comes back as the exit status.
template <typename Probe>
int UnderFilter(const std::vector<sock_filter>& filter, Probe probe) {
  const pid_t pid = fork();
  if (pid == 0) {
    if (!InstallFilter(filter)) _exit(255);
    errno = 0;
    _exit(probe() < 0 ? errno : 0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 1000 + WTERMSIG(status);
}

}  // namespace

TEST_CASE("the share server's filter refuses device nodes and setuid/setgid modes, and nothing else") {
  char tmpl[] = "/tmp/krunbox-filter-XXXXXX";
  REQUIRE(mkdtemp(tmpl));
  const std::string dir = tmpl;
  const std::string file = dir + "/f";
  close(open(file.c_str(), O_CREAT | O_WRONLY, 0644));
  const int dirFd = open(dir.c_str(), O_DIRECTORY | O_RDONLY);
  const auto filter = ShareServerFilter();
  const auto path = [&](const char* name) { return dir + "/" + name; };

  // The chmod family with a setuid or setgid bit.
  CHECK(UnderFilter(filter, [&] { return chmod(file.c_str(), 04755); }) == EPERM);
  CHECK(UnderFilter(filter, [&] { return chmod(file.c_str(), 02755); }) == EPERM);
  CHECK(UnderFilter(filter, [&] { return fchmodat(dirFd, "f", 06755, 0); }) == EPERM);
  CHECK(UnderFilter(filter, [&] {
          const int fd = open(file.c_str(), O_RDONLY);
          return fchmod(fd, 04711);
        }) == EPERM);
  CHECK(UnderFilter(filter, [&] { return static_cast<int>(syscall(452, dirFd, "f", 04755, 0)); }) == EPERM);
  // Creating with those bits.
  CHECK(UnderFilter(filter, [&] { return openat(dirFd, "suid", O_CREAT | O_WRONLY, 04755); }) == EPERM);
  CHECK(UnderFilter(filter, [&] { return open(path("sgid").c_str(), O_CREAT | O_WRONLY, 02755); }) == EPERM);
  CHECK(UnderFilter(filter, [&] { return mknodat(dirFd, "reg", S_IFREG | 04755, 0); }) == EPERM);
  CHECK(UnderFilter(filter, [&] { return mkdirat(dirFd, "gdir", 02775); }) == EPERM);
  // Device nodes (the null device's numbers), whatever the caller's privileges.
  CHECK(UnderFilter(filter, [&] { return mknodat(dirFd, "null", S_IFCHR | 0666, makedev(1, 3)); }) == EPERM);
  CHECK(UnderFilter(filter, [&] { return mknod(path("blk").c_str(), S_IFBLK | 0600, makedev(7, 0)); }) == EPERM);
  // Calls whose modes a filter can't read.
  CHECK(UnderFilter(filter, [&] { return static_cast<int>(syscall(SYS_openat2, dirFd, "x", nullptr, 0)); }) == ENOSYS);
  CHECK(UnderFilter(filter, [&] { return static_cast<int>(syscall(SYS_io_uring_setup, 1, nullptr)); }) == ENOSYS);

  // What a share server needs keeps working.
  CHECK(UnderFilter(filter, [&] { return chmod(file.c_str(), 01777); }) == 0);
  CHECK(UnderFilter(filter, [&] { return fchmodat(dirFd, "f", 0640, 0); }) == 0);
  CHECK(UnderFilter(filter, [&] { return openat(dirFd, "new", O_CREAT | O_WRONLY, 0755); }) >= 0);
  CHECK(UnderFilter(filter, [&] { return open(file.c_str(), O_RDONLY); }) == 0);
  CHECK(UnderFilter(filter, [&] { return mkdirat(dirFd, "sub", 0755); }) == 0);
  CHECK(UnderFilter(filter, [&] { return mknodat(dirFd, "fifo", S_IFIFO | 0644, 0); }) == 0);
  struct stat st;
  REQUIRE(stat(file.c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0640);

  close(dirFd);
  REQUIRE(system(("rm -rf " + dir).c_str()) == 0);
}
