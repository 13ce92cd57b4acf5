// Starting workload processes inside the workload root.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "agent/setup.h"

namespace agent {

struct ExecSpec {
  std::vector<std::string> argv;
  std::vector<std::string> env;  // KEY=VALUE; PATH gets a default if absent
  std::string cwd = "/";
  uid_t uid = 0;
  gid_t gid = 0;
};

// Resolves "name", "uid" or "uid:gid" against the workload root's
// /etc/passwd; throws SetupError naming what is wrong (ids above
// 4294967294 are refused, never truncated).
void ResolveUser(const std::string& user, ExecSpec& spec);

// Throws SetupError unless `cwd` is a folder in the workload root.
void CheckCwd(const std::string& cwd);

// The process's standard descriptors: three pipes, or one terminal (the
// slave side of a pseudo-terminal), which then also becomes its
// controlling terminal.
struct Stdio {
  int in = -1, out = -1, err = -1;
  int terminal = -1;
};

// A pseudo-terminal from the workload root's devpts, sized cols x rows;
// its slave side belongs to `uid`, as login programs arrange. Throws
// SetupError.
struct Terminal {
  krunbox::Fd master, slave;
};
Terminal OpenTerminal(uint16_t cols, uint16_t rows, uid_t uid);
// TIOCSWINSZ: the terminal's foreground process group gets SIGWINCH.
void ResizeTerminal(int master, uint16_t cols, uint16_t rows);

// A program that could not be started; `field` names the option the guest
// refused ("user", "cwd", "command"), or is empty; `error` is the errno.
struct LaunchError : SetupError {
  LaunchError(std::string field, int error, const std::string& message)
      : SetupError(message), field(std::move(field)), error(error) {}
  std::string field;
  int error;
};

// Starts spec's program in a new session (its own process group), chrooted
// into the workload root, as spec's user in spec's cwd. The child shares
// the agent's memory until it runs the program (clone with CLONE_VM |
// CLONE_VFORK, as posix_spawn does): no page tables are copied, and the
// agent resumes only once the program runs, so killing its group can never
// miss it. Throws LaunchError if a step failed (the child is then reaped).
pid_t Launch(const ExecSpec& spec, const Stdio& stdio);

}  // namespace agent
