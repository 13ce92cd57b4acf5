// Helpers shared by the agent's parts: errors, logging, mounts, I/O.
#pragma once

#include <stdexcept>
#include <string>

namespace agent {

// Where the agent builds the workload's root; every process it runs is
// chrooted there.
constexpr const char* kNewRoot = "/newroot";

struct SetupError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Throws SetupError with strerror(errno) appended.
[[noreturn]] void Fail(const std::string& what);
void Log(const std::string& msg);
bool WriteAll(int fd, const std::string& s);
void MkdirP(const std::string& path);
void Mount(const char* src, const std::string& target, const char* type, unsigned long flags, const char* data);

}  // namespace agent
