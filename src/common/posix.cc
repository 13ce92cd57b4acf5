#include "common/posix.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

namespace krunbox {

void Fd::reset(int fd) {
  if (fd_ >= 0) close(fd_);
  fd_ = fd;
}

int64_t NowMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

void SetNonBlocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

short PollEvents(const std::vector<pollfd>& fds, int fd) {
  if (fd < 0) return 0;
  for (const pollfd& p : fds)
    if (p.fd == fd) return p.revents;
  return 0;
}

bool WriteAll(int fd, const char* data, size_t size) {
  size_t off = 0;
  while (off < size) {
    const ssize_t n = write(fd, data + off, size - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

bool WriteAll(int fd, const std::string& data) { return WriteAll(fd, data.data(), data.size()); }

namespace {

// `err` keeps the first failure's errno (later clean-up calls overwrite errno).
bool RemoveEntry(int dirFd, const char* name, dev_t onlyDev, bool sameDevice, int& err) {
  auto fail = [&err]() {
    if (err == 0) err = errno;
    return false;
  };
  struct stat st;
  if (fstatat(dirFd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) return errno == ENOENT || fail();
  if (!S_ISDIR(st.st_mode)) return unlinkat(dirFd, name, 0) == 0 || errno == ENOENT || fail();
  if (sameDevice && st.st_dev != onlyDev) {
    errno = EXDEV;
    return fail();
  }
  Fd fd(openat(dirFd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) return fail();
  DIR* d = fdopendir(fd.get());
  if (!d) return fail();
  fd.release();  // owned by `d` now
  bool ok = true;
  while (dirent* e = readdir(d)) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    ok = RemoveEntry(dirfd(d), e->d_name, onlyDev, sameDevice, err) && ok;
  }
  closedir(d);
  return (unlinkat(dirFd, name, AT_REMOVEDIR) == 0 || errno == ENOENT || fail()) && ok;
}

}  // namespace

bool RemoveTreeAt(int dirFd, const char* name, bool sameDevice) {
  struct stat st;
  if (fstatat(dirFd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) return errno == ENOENT;
  int err = 0;
  if (RemoveEntry(dirFd, name, st.st_dev, sameDevice, err)) return true;
  errno = err;
  return false;
}

}  // namespace krunbox
