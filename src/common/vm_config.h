// The one VM description shared by the addon (which builds it from JS), the
// runner (which turns it into a VMM invocation) and the tests. It travels
// from addon to runner as one line of JSON.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/ip_address.h"

namespace krunbox {

// A host folder exported to the guest over virtio-fs.
struct Share {
  std::string hostPath;   // absolute host folder, or a regular file
  std::string guestPath;  // absolute mount point inside the guest
  bool readOnly = false;  // enforced on the host, not only by the guest mount
  bool file = false;      // hostPath is a file (found when the config is read)
};

// A size-limited tmpfs that the guest agent mounts; gone with the VM.
struct TmpfsMount {
  std::string guestPath;
  uint32_t sizeMiB = 0;
};

// One vsock port bridged to a host Unix socket, in libkrun's terms:
// listen=true  -> the host listens on socketPath and each connection reaches
//                 the guest's listener on `port` (host -> guest);
// listen=false -> a guest connecting to host port `port` reaches the Unix
//                 socket that the host program listens on (guest -> host).
struct VsockPort {
  uint32_t port = 0;
  std::string socketPath;
  bool listen = false;
};

// A disk image whose file system becomes the guest's root. The VM opens it
// read-only; the guest writes to a copy-on-write layer over it.
struct RootDisk {
  std::string path;        // a regular file
  std::string format;      // "raw" | "qcow2"
  uint32_t partition = 0;  // 0: the whole disk's file system, else the first partition
                           // holding a root (one with /etc); N: partition N
};

enum class Accel { Auto, Kvm, Tcg };

// One allow or deny entry, as lib/network parsed it from what the user
// wrote ("*.example.com:443", "203.0.113.0/24", "*").
struct NetRule {
  enum class Kind { Any, Name, Suffix, Cidr };
  Kind kind = Kind::Any;
  std::string name;   // Name: "example.com"; Suffix: ".example.com" (subdomains only)
  Cidr cidr;          // Cidr
  uint16_t port = 0;  // 0: every port
  std::string text;   // the entry as written, for the reasons in events
};

// Egress policy, enforced by the runner's network stack (runner/net/).
struct NetworkConfig {
  bool enabled = false;  // the guest gets a network device at all
  std::vector<NetRule> allow, deny;
  std::map<std::string, std::vector<IpAddress>> hosts;  // name overrides, lower case
  bool askHost = false;  // every allowed connection also needs the host's verdict (onConnect)
};

// A host TCP port whose connections reach a guest port (through the agent,
// so it needs no network device).
struct PortForward {
  std::string hostIp;
  uint16_t hostPort = 0;  // 0: any free port, reported in the "ports" event
  uint16_t guestPort = 0;
};

// Every field is given by lib/ (lib/vm/vm.ts), which owns the defaults.
struct VmConfig {
  std::string backend;            // "qemu" | "libkrun"
  Accel accel = Accel::Auto;      // qemu only; libkrun always uses KVM/HVF
  uint32_t cpus = 0;
  uint32_t memoryMiB = 0;
  std::string rootPath;           // host folder that becomes the guest's / (with
                                  // rootDisk: libkrun's own root, which holds the agent)
  bool rootReadOnly = false;
  std::optional<RootDisk> rootDisk;  // the root is a disk image's file system
  std::vector<Share> shares;
  std::vector<TmpfsMount> tmpfs;
  std::vector<VsockPort> vsock;
  std::vector<std::string> command;  // argv of a workload to run to completion;
                                     // empty: the VM serves execs until stopped
  std::string agentSocketPath;       // host socket reaching the agent's exec port
  std::string agentFsSocketPath;     // ...and its file port
  std::string forwardSocketPath;     // host socket reaching the agent's port forwarder
  NetworkConfig network;
  std::vector<PortForward> ports;    // need forwardSocketPath
  std::vector<std::string> env;      // KEY=VALUE
  std::string workdir;
  std::string consolePath;           // empty: a file in the runner's run dir
  uint32_t consoleLimitBytes = 0;    // the rest of the guest's output is dropped
  uint32_t bootTimeoutMs = 0;        // boot -> guest agent ready

  // Runtime inputs, resolved by lib/ (package-relative) and checked here.
  std::string kernelPath;
  std::string initrdPath;
  std::string qemuPath;
  std::string virtiofsdPath;
  std::string vsockDaemonPath;
  std::string libkrunPath;        // empty: the system's libkrun.so.1
  std::string accelCachePath;     // where an auto KVM probe result is kept
};

// A config value the user must fix; `field` is the dotted path of the
// offending option (e.g. "shares[2].guestPath").
class ConfigError : public std::runtime_error {
 public:
  ConfigError(std::string field, const std::string& message)
      : std::runtime_error(field + ": " + message), field_(std::move(field)) {}
  const std::string& field() const { return field_; }

 private:
  std::string field_;
};

// Limits that keep one VM within what both backends and the guest support.
constexpr uint32_t kMaxCpus = 64;
constexpr uint32_t kMinMemoryMiB = 64;
constexpr uint32_t kMaxShares = 64;
constexpr uint32_t kMaxVsockPorts = 64;
constexpr uint32_t kMaxNetRules = 1024;
constexpr uint32_t kMaxPortForwards = 64;

// Parses and validates; throws ConfigError naming the field.
VmConfig VmConfigFromJson(const nlohmann::json& j);
// One entry of "shares" / "tmpfs" (also what the addon attaches to a running
// VM); `field` prefixes the names in errors.
Share ShareFromJson(const nlohmann::json& j, const std::string& field);
TmpfsMount TmpfsFromJson(const nlohmann::json& j, const std::string& field);
nlohmann::json VmConfigToJson(const VmConfig& c);

const char* AccelName(Accel a);

}  // namespace krunbox
