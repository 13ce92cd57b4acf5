// The runner's own helpers: errno-carrying errors, child processes tied to
// the runner's lifetime, Unix sockets.
#pragma once

#include <linux/filter.h>
#include <sys/types.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "common/posix.h"

namespace krunbox {

// An error the runner reports to the addon as {"event":"error","code":...}.
class RunnerError : public std::runtime_error {
 public:
  RunnerError(std::string code, const std::string& message)
      : std::runtime_error(message), code_(std::move(code)) {}
  const std::string& code() const { return code_; }

 private:
  std::string code_;
};

// Throws RunnerError{code} with strerror(errno) appended.
[[noreturn]] void ThrowErrno(const std::string& code, const std::string& what);


// Last `max` bytes of a file, for error messages (console, daemon logs).
std::string FileTail(const std::string& path, size_t max);

// fork + exec of a helper (VMM, daemons). The child dies with the runner
// (PR_SET_PDEATHSIG), starts with default signal handling and an empty
// signal mask, and gets only stdin=/dev/null, stdout+stderr=logPath and,
// when `passFd` is given, that descriptor as fd 3. Its open files are
// bounded (RLIMIT_NOFILE, without CAP_SYS_RESOURCE to raise it), since the
// guest decides how many virtiofsd keeps. With `filter`, it runs under that
// seccomp program (or does not run).
pid_t SpawnHelper(const std::vector<std::string>& argv, const std::string& logPath, int passFd = -1,
                  const std::vector<sock_filter>* filter = nullptr);

// A whole procfs file (they report a size of 0, so FileTail can't read them).
std::string ReadProcFile(const std::string& path);

// The children of `pid`, their children and so on (from /proc).
std::vector<pid_t> Descendants(pid_t pid);

// SIGKILLs `child` (a child of the caller) and all its descendants, reaps
// it, and returns once every one of them has exited (at most `timeoutMs`):
// by then their mounts and files are released.
void KillTree(pid_t child, int timeoutMs = 5000);

// Listening Unix stream socket at `path` (a stale socket file is replaced;
// any other file there is an error).
Fd ListenUnix(const std::string& path);
Fd ConnectUnix(const std::string& path);

}  // namespace krunbox
