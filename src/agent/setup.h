// What the agent needs to set the guest up: its folders, errors, logging, mounts.
#pragma once

#include <stdexcept>
#include <string>

#include "common/posix.h"

namespace agent {

// The agent works in a tmpfs of its own at kWorkDir (so that it also works
// on a read-only root under libkrun's init): the VM's virtio-fs tree is
// mounted at kTreeDir and the workload's root is built at kNewRoot, where
// every process it runs is chrooted.
constexpr const char* kWorkDir = "/run";
constexpr const char* kTreeDir = "/run/tree";
constexpr const char* kNewRoot = "/run/root";

struct SetupError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Throws SetupError with strerror(errno) appended.
[[noreturn]] void Fail(const std::string& what);
void Log(const std::string& msg);
using krunbox::Fd;
using krunbox::WriteAll;
void MkdirP(const std::string& path);
void Mount(const char* src, const std::string& target, const char* type, unsigned long flags, const char* data);
// The readahead of the file system mounted at `mountPoint` (best effort).
void SetReadAheadKb(const std::string& mountPoint, unsigned kb);
// Loads the modules that `list` names (one a line, in dependency order).
void LoadModules(const char* list);

}  // namespace agent
