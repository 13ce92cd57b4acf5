// What the guest agent runs and mounts: written by the runner as
// config.json at the top of the VM's virtio-fs tree, read by the agent.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace krunbox {

struct GuestMount {
  enum class Kind { Share, Tmpfs };
  Kind kind = Kind::Share;
  std::string source;     // Share: path inside the virtio-fs tree ("shares/3")
  std::string target;     // absolute path in the guest's root
  bool readOnly = false;  // Share: also enforced on the host
  uint32_t sizeMiB = 0;   // Tmpfs: size limit
  bool file = false;      // Share: a single file, bound onto a file
};

// The guest's one network interface (eth0), when the VM has a network.
struct GuestNetwork {
  std::string address;  // dotted IPv4
  uint32_t prefixLen = 0;
  std::string gateway;  // also the DNS server
  uint32_t mtu = 0;
};

struct GuestConfig {
  std::vector<std::string> command;  // empty: serve execs until powered off
  std::vector<std::string> env;      // KEY=VALUE
  std::string workdir;
  bool rootReadOnly = false;         // overlay a tmpfs upper over the shared root
  std::vector<GuestMount> mounts;
  std::optional<GuestNetwork> network;  // none: no network device, only lo
};

std::string GuestConfigToJson(const GuestConfig& c);
// Throws std::runtime_error naming what is missing or malformed.
GuestConfig GuestConfigFromJson(const std::string& text);

}  // namespace krunbox
