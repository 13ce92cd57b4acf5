// Small POSIX helpers shared by the addon, the runner and the guest agent:
// one owned-fd type, a monotonic clock, poll bookkeeping, whole writes and
// a tree removal that never follows symlinks.
#pragma once

#include <poll.h>
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace krunbox {

// An owned file descriptor, closed when it goes out of scope.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept {
    reset(o.release());
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() {
    const int f = fd_;
    fd_ = -1;
    return f;
  }
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

// Milliseconds on CLOCK_MONOTONIC.
int64_t NowMs();

void SetNonBlocking(int fd);

// What poll() reported for `fd` (0 when fd is negative or not in `fds`).
short PollEvents(const std::vector<pollfd>& fds, int fd);

// Writes all of `data` (retrying short writes and EINTR); false on error.
bool WriteAll(int fd, const char* data, size_t size);
bool WriteAll(int fd, const std::string& data);

// Removes `name` under the folder `dirFd` (AT_FDCWD for a path) and, if it
// is a folder, everything in it. Symlinks are removed, never followed. With
// `sameDevice`, folders on other filesystems (mount points) are left alone.
// False if anything could not be removed, with errno set to the first failure.
bool RemoveTreeAt(int dirFd, const char* name, bool sameDevice = false);

}  // namespace krunbox
