// Starting workload processes inside the workload root.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

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

// fork + exec in a new session (its own process group), chrooted into the
// workload root, with stdin/stdout/stderr on the given descriptors. The
// child reports exec failures on stderr and exits 127 (not found) or 126.
// Returns once the child leads its own process group, so that killing the
// group can never miss it.
pid_t Launch(const ExecSpec& spec, int in, int out, int err);

}  // namespace agent
