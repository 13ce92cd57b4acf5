// The host side of a VM's file sharing: a private run folder for sockets and
// logs, and the one tree that a single virtio-fs device exports.
#pragma once

#include <string>

#include "common/guest_config.h"
#include "common/vm_config.h"
#include "runner/util.h"

namespace krunbox {

// A folder under the per-user base ($KRUNBOX_RUN_DIR, else
// $TMPDIR/krunbox-<uid>) held by an flock for the runner's lifetime. Folders
// whose runner was killed (no lock holder) are swept by the next runner.
class RunDir {
 public:
  RunDir();
  ~RunDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  Fd lock_;
};

// Opens a share's host path (O_PATH) refusing a symbolic link in any of
// its parts: the addon sends canonical paths, so a link there appeared
// after the path was checked (a guest swapping a folder in a share it can
// write for a link to elsewhere on the host). Throws RunnerError.
Fd OpenBindSource(const std::string& hostPath);

// Enters a private mount namespace and builds, at `dir`, the tree the guest
// mounts from its virtio-fs device:
//   config.json   what the guest agent runs (GuestConfigFor below)
//   root/         bind of config.rootPath, when `root` is RootSource::Tree
//   shares/<i>/   bind of config.shares[i].hostPath
// Read-only folders are read-only bind mounts (recursively): the host kernel
// refuses the writes whatever the guest or the file server does. One device
// for all shares keeps interrupt lines and helper processes to one per VM.
void BuildSharedTree(const VmConfig& config, const std::string& dir, RootSource root);

// A read-only root served by a share server of its own (RootSource::Share):
// a read-only bind of config.rootPath at `dir` (after BuildSharedTree, in
// its namespace). The image never changes while VMs run, so that server
// lets the guest cache it without limit, while the tree keeps coherent
// caching for folders the host may change.
void BindRootShare(const VmConfig& config, const std::string& dir);

// Shares attached to a running VM (a warm pool's sandbox gets its volumes
// when it is handed out). Each is bind-mounted at attached/<n> in the tree
// built by BuildSharedTree, in the runner's namespace, from where the mount
// propagates into the share server's: read-only ones are read-only (and all
// nosuid, nodev) there as well.
class AttachedShares {
 public:
  explicit AttachedShares(std::string treeDir) : tree_(std::move(treeDir)) {}
  // Mounts `share` into the tree; returns what the agent is to mount. Throws RunnerError.
  GuestMount Add(const Share& share);
  // Takes a share back out (the guest could not mount it).
  void Remove(const GuestMount& m);

 private:
  std::string tree_;
  uint64_t next_ = 0;
};

// Detaches the tree (it lives only in the runner's namespace anyway).
void UnmountSharedTree(const std::string& dir);

// The guest agent's part of the config, as written to config.json.
GuestConfig GuestConfigFor(const VmConfig& config, RootSource root);

}  // namespace krunbox
