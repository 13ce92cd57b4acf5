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

// Where the agent finds the root it builds the workload's / from.
enum class RootSource {
  Tree,   // root/ in the VM's virtio-fs tree (read-write roots; libkrun)
  Share,  // its own virtio-fs device, tag kRootShareTag, cached without limit
  Disk,   // the file system on the VM's one virtio-blk disk (/dev/vda)
};
constexpr const char* kRootShareTag = "krunbox-root";

struct GuestConfig {
  std::vector<std::string> command;  // empty: serve execs until powered off
  std::vector<std::string> env;      // KEY=VALUE
  std::string workdir;
  bool rootReadOnly = false;         // overlay a tmpfs upper over the shared root
  RootSource rootSource = RootSource::Tree;
  uint32_t rootPartition = 0;        // Disk: 0 for the whole disk (or the first
                                     // partition holding a root), else that partition
  std::vector<GuestMount> mounts;
  std::optional<GuestNetwork> network;  // none: no network device, only lo
};

std::string GuestConfigToJson(const GuestConfig& c);
// One mount, as the runner asks the agent for it on a running VM ("mount <id> <json>").
std::string GuestMountToJson(const GuestMount& m);
GuestMount GuestMountFromJson(const std::string& text);
// Throws std::runtime_error naming what is missing or malformed.
GuestConfig GuestConfigFromJson(const std::string& text);

}  // namespace krunbox
