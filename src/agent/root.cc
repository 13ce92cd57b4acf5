#include "agent/root.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "agent/setup.h"

namespace agent {
namespace {

using krunbox::GuestConfig;
using krunbox::GuestMount;
using krunbox::RootSource;

// The one virtio-blk disk a disk image root arrives on.
constexpr const char* kDisk = "vda";
// What a disk image root may hold (ext4's driver also mounts ext2 and ext3).
constexpr const char* kDiskFileSystems[] = {"ext4", "erofs", "squashfs"};
constexpr const char* kDiskFileSystemNames = "ext2/3/4, erofs or squashfs";

bool Exists(const std::string& path) { return access(path.c_str(), F_OK) == 0; }

// Read-only: the device is, and the guest writes to the overlay above.
bool MountFileSystem(const std::string& device, const std::string& target) {
  for (const char* fs : kDiskFileSystems) {
    // noload: a read-only device cannot replay an ext4 journal.
    const char* options = strcmp(fs, "ext4") == 0 ? "noload" : nullptr;
    if (mount(device.c_str(), target.c_str(), fs, MS_RDONLY, options) == 0) return true;
  }
  return false;
}

// The disk's partition numbers, ascending (the kernel has read its MBR or GPT).
std::vector<int> Partitions() {
  std::vector<int> out;
  const std::string dir = std::string("/sys/block/") + kDisk;
  DIR* d = opendir(dir.c_str());
  if (!d) return out;
  const size_t prefix = strlen(kDisk);
  while (dirent* e = readdir(d)) {
    const char* digits = e->d_name + prefix;
    if (strncmp(e->d_name, kDisk, prefix) == 0 && *digits && strspn(digits, "0123456789") == strlen(digits))
      out.push_back(atoi(digits));
  }
  closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

// `partition` 0: the whole disk's file system, else the first partition
// whose file system holds /etc (a root, not a /boot or an EFI partition).
void MountDiskRoot(uint32_t partition, const std::string& target) {
  const std::string disk = std::string("/dev/") + kDisk;
  if (!Exists(disk)) throw SetupError("the root disk image did not appear as " + disk);
  if (partition > 0) {
    const std::string device = disk + std::to_string(partition);
    if (!Exists(device)) throw SetupError("the root disk image has no partition " + std::to_string(partition));
    if (!MountFileSystem(device, target))
      throw SetupError("partition " + std::to_string(partition) + " of the root disk image holds no " +
                       kDiskFileSystemNames + " file system");
    return;
  }
  if (MountFileSystem(disk, target)) return;
  for (int n : Partitions()) {
    if (!MountFileSystem(disk + std::to_string(n), target)) continue;
    if (Exists(target + "/etc")) return;
    umount2(target.c_str(), 0);
  }
  throw SetupError(std::string("the root disk image holds no ") + kDiskFileSystemNames +
                   " file system, neither on the whole disk nor in a partition with /etc");
}

// The read-only layer of a copy-on-write root, at `lower`.
void MountLower(const GuestConfig& cfg, const std::string& lower, bool pid1) {
  switch (cfg.rootSource) {
    case RootSource::Tree:
      // virtio-fs submounts are automount points, which overlayfs refuses
      // as a layer; a bind mount resolves it to the mounted root.
      Mount((std::string(kTreeDir) + "/root").c_str(), lower, nullptr, MS_BIND | MS_REC, nullptr);
      return;
    case RootSource::Share:
      Mount(krunbox::kRootShareTag, lower, "virtiofs", MS_RDONLY, nullptr);
      return;
    case RootSource::Disk:
      if (pid1) LoadModules("/lib/modules/order.disk");
      MountDiskRoot(cfg.rootPartition, lower);
      return;
  }
}

}  // namespace

void MountInRoot(const GuestMount& m) {
  const std::string target = std::string(kNewRoot) + m.target;
  if (m.file) {
    // A file is bound onto a file: make an empty one if the image has none.
    MkdirP(target.substr(0, target.rfind('/')));
    const int fd = open(target.c_str(), O_RDONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) Fail("create the mount point " + m.target);
    close(fd);
  } else {
    MkdirP(target);
  }
  if (m.kind == GuestMount::Kind::Tmpfs) {
    const std::string opts = "mode=1777,size=" + std::to_string(m.sizeMiB) + "m";
    Mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, opts.c_str());
    return;
  }
  Mount((std::string(kTreeDir) + "/" + m.source).c_str(), target, nullptr, MS_BIND | MS_REC, nullptr);
  if (m.readOnly) Mount(nullptr, target, nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY, nullptr);
}

void BuildRoot(const GuestConfig& cfg, bool pid1) {
  MkdirP(kNewRoot);
  if (cfg.rootReadOnly) {
    // The image stays untouched: writes land in a tmpfs upper layer.
    const std::string work = kWorkDir;
    MkdirP(work + "/lower");
    MountLower(cfg, work + "/lower", pid1);
    MkdirP(work + "/overlay");
    Mount("tmpfs", work + "/overlay", "tmpfs", 0, "mode=0755");
    MkdirP(work + "/overlay/upper");
    MkdirP(work + "/overlay/work");
    const std::string opts =
        "lowerdir=" + work + "/lower,upperdir=" + work + "/overlay/upper,workdir=" + work + "/overlay/work";
    Mount("overlay", kNewRoot, "overlay", 0, opts.c_str());
  } else {
    Mount((std::string(kTreeDir) + "/root").c_str(), kNewRoot, nullptr, MS_BIND | MS_REC, nullptr);
  }
  for (const GuestMount& m : cfg.mounts) MountInRoot(m);
  const std::string root = kNewRoot;
  for (const char* d : {"/proc", "/sys", "/dev"}) MkdirP(root + d);
  Mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr);
  Mount("sysfs", root + "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr);
  Mount("devtmpfs", root + "/dev", "devtmpfs", MS_NOSUID, nullptr);
  // Terminals for processes that ask for one (a new instance: /dev/ptmx in
  // the root finds it at /dev/pts).
  MkdirP(root + "/dev/pts");
  Mount("devpts", root + "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "mode=0620,ptmxmode=0666");
  MkdirP(root + "/tmp");
  Mount("tmpfs", root + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
}

}  // namespace agent
