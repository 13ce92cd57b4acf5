#include "runner/staging.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <linux/openat2.h>

#include "runner/net/guest_network.h"

namespace krunbox {
namespace {

// From linux/mount.h, which clashes with glibc's sys/mount.h.
struct MountAttr {
  uint64_t attr_set, attr_clr, propagation, userns_fd;
};
constexpr uint64_t kAttrRdonly = 0x1, kAttrNosuid = 0x2, kAttrNodev = 0x4;
constexpr unsigned kAtRecursive = 0x8000;

std::string RunBase() {
  if (const char* d = getenv("KRUNBOX_RUN_DIR"); d && *d) return d;
  const char* tmp = getenv("TMPDIR");
  return std::string(tmp && *tmp ? tmp : "/tmp") + "/krunbox-" + std::to_string(getuid());
}

void EnsureBase(const std::string& base) {
  // The daemons' option syntax ("key=value,key=value") cannot carry a comma.
  if (base.find(',') != std::string::npos)
    throw RunnerError("SETUP_FAILED", "the run folder " + base + " contains a comma; set KRUNBOX_RUN_DIR to a path without one");
  if (mkdir(base.c_str(), 0700) != 0 && errno != EEXIST) ThrowErrno("SETUP_FAILED", "mkdir " + base);
  struct stat st;
  if (lstat(base.c_str(), &st) != 0) ThrowErrno("SETUP_FAILED", "stat " + base);
  // Another user could pre-create the folder to watch or hijack our sockets.
  if (!S_ISDIR(st.st_mode) || st.st_uid != getuid() || (st.st_mode & 077) != 0)
    throw RunnerError("SETUP_FAILED", base + " must be a folder owned by you with mode 0700; remove it and retry");
}

// Host-side folders beside the tree for shares attached later (AttachedShares).
std::string AttachPoints(const std::string& tree) { return tree + "-attached"; }
std::string AttachStaging(const std::string& tree) { return tree + "-staging"; }

// A run folder whose lock nobody holds belongs to a runner that was killed.
void SweepStale(const std::string& base) {
  DIR* d = opendir(base.c_str());
  if (!d) return;
  while (dirent* e = readdir(d)) {
    if (strncmp(e->d_name, "vm-", 3) != 0) continue;
    const std::string dir = base + "/" + e->d_name;
    Fd lock(open((dir + "/lock").c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!lock.valid()) {
      // Not locked yet (a runner between mkdtemp and flock) or half-removed.
      struct stat st;
      if (lstat(dir.c_str(), &st) == 0 && time(nullptr) - st.st_mtime > 60) RemoveTreeAt(AT_FDCWD, dir.c_str(), true);
      continue;
    }
    if (flock(lock.get(), LOCK_EX | LOCK_NB) == 0) RemoveTreeAt(AT_FDCWD, dir.c_str(), true);
  }
  closedir(d);
}

void BindInto(const std::string& hostPath, const std::string& target, bool readOnly) {
  // Mount what was checked: the fd pins it, the magic link names it.
  const Fd pinned = OpenBindSource(hostPath);
  const std::string source = "/proc/self/fd/" + std::to_string(pinned.get());
  if (mount(source.c_str(), target.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0)
    ThrowErrno("SETUP_FAILED", "bind " + hostPath);
  MountAttr attr{kAttrNosuid | kAttrNodev | (readOnly ? kAttrRdonly : 0), 0, 0, 0};
  if (syscall(SYS_mount_setattr, AT_FDCWD, target.c_str(), kAtRecursive, &attr, sizeof attr) == 0) return;
  if (errno != ENOSYS) ThrowErrno("SETUP_FAILED", "mount_setattr " + target);
  // Kernels before 5.12: without recursive attributes, a read-only share
  // must not expose submounts that would stay writable.
  if (readOnly) {
    umount2(target.c_str(), MNT_DETACH);
    if (mount(source.c_str(), target.c_str(), nullptr, MS_BIND, nullptr) != 0)
      ThrowErrno("SETUP_FAILED", "bind " + hostPath);
  }
  const unsigned long flags = MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV | (readOnly ? MS_RDONLY : 0);
  if (mount(nullptr, target.c_str(), nullptr, flags, nullptr) != 0)
    ThrowErrno("SETUP_FAILED", "remount " + target);
}

void MakeDir(const std::string& path) {
  if (mkdir(path.c_str(), 0755) != 0) ThrowErrno("SETUP_FAILED", "mkdir " + path);
}

// A bind mount needs a mount point of its own kind: a file for a file.
void MakeMountPoint(const std::string& path, bool file) {
  if (!file) return MakeDir(path);
  Fd fd(open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (!fd.valid()) ThrowErrno("SETUP_FAILED", "create " + path);
}

void EnterMountNamespace() {
  const bool root = geteuid() == 0;
  if (root) {
    if (unshare(CLONE_NEWNS) != 0) ThrowErrno("SETUP_FAILED", "unshare(CLONE_NEWNS)");
  } else {
    // Unprivileged: become root of a user namespace that maps only us.
    const uid_t uid = geteuid();
    const gid_t gid = getegid();
    if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0)
      ThrowErrno("SETUP_FAILED", "unshare(CLONE_NEWUSER|CLONE_NEWNS) (are unprivileged user namespaces enabled?)");
    auto put = [](const char* file, const std::string& text) {
      Fd fd(open(file, O_WRONLY | O_CLOEXEC));
      if (!fd.valid() || !WriteAll(fd.get(), text)) ThrowErrno("SETUP_FAILED", std::string("write ") + file);
    };
    put("/proc/self/setgroups", "deny");
    put("/proc/self/uid_map", "0 " + std::to_string(uid) + " 1");
    put("/proc/self/gid_map", "0 " + std::to_string(gid) + " 1");
  }
  // Our mounts must never show up in the host's namespace.
  if (mount(nullptr, "/", nullptr, MS_SLAVE | MS_REC, nullptr) != 0)
    ThrowErrno("SETUP_FAILED", "make / a slave mount");
}

}  // namespace

Fd OpenBindSource(const std::string& hostPath) {
  open_how how{};
  how.flags = O_PATH | O_CLOEXEC;
  how.resolve = RESOLVE_NO_SYMLINKS;
  Fd fd(static_cast<int>(syscall(SYS_openat2, AT_FDCWD, hostPath.c_str(), &how, sizeof how)));
  if (fd.valid()) return fd;
  if (errno == ELOOP)
    throw RunnerError("SETUP_FAILED", "will not share " + hostPath +
                                          ": a part of the path is a symbolic link (one appeared after the path was "
                                          "checked, or the config names a path that is not canonical)");
  if (errno != ENOSYS) ThrowErrno("SETUP_FAILED", "open " + hostPath);
  // Kernels before 5.6: no openat2; the last component at least is no link.
  Fd plain(open(hostPath.c_str(), O_PATH | O_CLOEXEC | O_NOFOLLOW));
  if (!plain.valid()) ThrowErrno("SETUP_FAILED", "open " + hostPath);
  return plain;
}

RunDir::RunDir() {
  const std::string base = RunBase();
  EnsureBase(base);
  SweepStale(base);
  // Canonical: the tree's own folders are bound like shares (OpenBindSource).
  char* real = realpath(base.c_str(), nullptr);
  if (!real) ThrowErrno("SETUP_FAILED", "realpath " + base);
  std::string tmpl = std::string(real) + "/vm-XXXXXX";
  free(real);
  if (!mkdtemp(tmpl.data())) ThrowErrno("SETUP_FAILED", "mkdtemp in " + base);
  path_ = tmpl;
  lock_ = Fd(open((path_ + "/lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!lock_.valid() || flock(lock_.get(), LOCK_EX) != 0) ThrowErrno("SETUP_FAILED", "lock " + path_);
}

RunDir::~RunDir() { RemoveTreeAt(AT_FDCWD, path_.c_str(), true); }

void BuildSharedTree(const VmConfig& config, const std::string& dir, RootSource root) {
  EnterMountNamespace();
  MakeDir(dir);
  if (mount("krunbox", dir.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=4m") != 0)
    ThrowErrno("SETUP_FAILED", "mount tmpfs at " + dir);
  {
    Fd fd(open((dir + "/config.json").c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    if (!fd.valid() || !WriteAll(fd.get(), GuestConfigToJson(GuestConfigFor(config, root))))
      ThrowErrno("SETUP_FAILED", "write guest config");
  }
  if (root == RootSource::Tree) {
    MakeDir(dir + "/root");
    BindInto(config.rootPath, dir + "/root", config.rootReadOnly);
  }
  MakeDir(dir + "/shares");
  for (size_t i = 0; i < config.shares.size(); i++) {
    const std::string target = dir + "/shares/" + std::to_string(i);
    MakeMountPoint(target, config.shares[i].file);
    BindInto(config.shares[i].hostPath, target, config.shares[i].readOnly);
  }
  // Mount points for shares attached while the VM runs: a read-only bind
  // of a folder only the runner writes to (the guest can't create entries),
  // made a shared mount so that mounts under it later propagate into the
  // share server's own mount namespace (a slave of ours once it starts).
  MakeDir(dir + "/attached");
  MakeDir(AttachPoints(dir));
  BindInto(AttachPoints(dir), dir + "/attached", true);
  if (mount(nullptr, (dir + "/attached").c_str(), nullptr, MS_SHARED, nullptr) != 0)
    ThrowErrno("SETUP_FAILED", "make " + dir + "/attached a shared mount");
  // The tree itself is read-only too: the guest can't rewrite its config.
  MountAttr attr{kAttrRdonly, 0, 0, 0};
  if (syscall(SYS_mount_setattr, AT_FDCWD, dir.c_str(), 0, &attr, sizeof attr) != 0 &&
      mount(nullptr, dir.c_str(), nullptr, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, "mode=0755,size=4m") != 0)
    ThrowErrno("SETUP_FAILED", "make " + dir + " read-only");
}

void BindRootShare(const VmConfig& config, const std::string& dir) {
  MakeDir(dir);
  BindInto(config.rootPath, dir, true);
}

void UnmountSharedTree(const std::string& dir) { umount2(dir.c_str(), MNT_DETACH); }

GuestMount AttachedShares::Add(const Share& share) {
  const std::string n = std::to_string(next_++);
  const std::string staging = AttachStaging(tree_), staged = staging + "/" + n;
  const std::string point = AttachPoints(tree_) + "/" + n, target = tree_ + "/attached/" + n;
  if (mkdir(staging.c_str(), 0700) != 0 && errno != EEXIST) ThrowErrno("SETUP_FAILED", "mkdir " + staging);
  MakeMountPoint(staged, share.file);
  struct Unstage {
    std::string path;
    ~Unstage() {
      umount2(path.c_str(), MNT_DETACH);
      remove(path.c_str());
    }
  } unstage{staged};
  // Read-only, nosuid and nodev are set here, out of the share server's
  // sight: the copy that propagates to it is made with them (mount
  // attributes set later would not propagate).
  BindInto(share.hostPath, staged, share.readOnly);
  MakeMountPoint(point, share.file);
  if (mount(staged.c_str(), target.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0) {
    const int err = errno;
    remove(point.c_str());
    errno = err;
    ThrowErrno("SETUP_FAILED", "bind " + share.hostPath);
  }
  GuestMount m;
  m.source = "attached/" + n;
  m.target = share.guestPath;
  m.readOnly = share.readOnly;
  m.file = share.file;
  return m;
}

void AttachedShares::Remove(const GuestMount& m) { umount2((tree_ + "/" + m.source).c_str(), MNT_DETACH); }

GuestConfig GuestConfigFor(const VmConfig& config, RootSource root) {
  GuestConfig g;
  g.rootSource = root;
  g.rootPartition = config.rootDisk ? config.rootDisk->partition : 0;
  g.command = config.command;
  g.env = config.env;
  g.workdir = config.workdir;
  g.rootReadOnly = config.rootReadOnly;
  for (size_t i = 0; i < config.shares.size(); i++) {
    GuestMount m;
    m.source = "shares/" + std::to_string(i);
    m.target = config.shares[i].guestPath;
    m.readOnly = config.shares[i].readOnly;
    m.file = config.shares[i].file;
    g.mounts.push_back(m);
  }
  for (const TmpfsMount& t : config.tmpfs) {
    GuestMount m;
    m.kind = GuestMount::Kind::Tmpfs;
    m.target = t.guestPath;
    m.sizeMiB = t.sizeMiB;
    g.mounts.push_back(m);
  }
  if (config.network.enabled)
    g.network = GuestNetwork{IpAddress::V4(net::kGuestIp).ToString(), net::kGuestPrefixLen,
                             IpAddress::V4(net::kGatewayIp).ToString(), net::kGuestMtu};
  return g;
}

}  // namespace krunbox
