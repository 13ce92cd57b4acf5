#include "addon/beneath_ops.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/posix.h"

namespace krunbox {
namespace beneath {
namespace {

// A guest renaming folders while the kernel resolves a path makes openat2
// answer EAGAIN (RESOLVE_BENEATH refuses to guess); a few retries are enough
// unless the guest races on purpose, which then just fails.
constexpr int kResolveRetries = 16;
// Creating a missing file races with a guest creating it: look again.
constexpr int kCreateRetries = 8;

std::string Describe(Error::Kind kind, int err, const std::string& syscall, const std::string& path, mode_t type) {
  const std::string where = path.empty() ? "." : path;
  if (kind == Error::Kind::Escape) return where + " leads outside the folder";
  if (kind == Error::Kind::Special) return where + " is a " + TypeName(type);
  return syscall + " " + where + ": " + strerror(err);
}

[[noreturn]] void Throw(int err, const std::string& syscall, const std::string& path) {
  // RESOLVE_BENEATH reports a path that would leave the root as EXDEV.
  throw Error(err == EXDEV ? Error::Kind::Escape : Error::Kind::Errno, err, syscall, path);
}

Fd OpenRoot(const std::string& root) {
  Fd fd(open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) throw Error(Error::Kind::Errno, errno, "open", "");
  return fd;
}

// openat2 beneath `rootFd`; rel is relative and normalized by lib/ (no
// leading '/', no "." or ".." parts); the kernel enforces the rest.
int OpenAt(int rootFd, const std::string& rel, uint64_t flags, uint64_t mode = 0) {
  open_how how{};
  how.flags = flags | O_CLOEXEC;
  how.mode = mode;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
  const std::string path = rel.empty() ? "." : rel;
  for (int i = 0;; i++) {
    const int fd = static_cast<int>(syscall(SYS_openat2, rootFd, path.c_str(), &how, sizeof how));
    if (fd >= 0 || errno != EAGAIN || i == kResolveRetries) return fd;
  }
}

Fd OpenOrThrow(int rootFd, const std::string& rel, uint64_t flags, const char* syscall = "open") {
  Fd fd(OpenAt(rootFd, rel, flags));
  if (!fd.valid()) Throw(errno, syscall, rel);
  return fd;
}

// Splits "a/b/c" into the parent "a/b" and the last component "c".
void SplitLast(const std::string& rel, std::string& parent, std::string& name) {
  const size_t slash = rel.find_last_of('/');
  parent = slash == std::string::npos ? "" : rel.substr(0, slash);
  name = slash == std::string::npos ? rel : rel.substr(slash + 1);
}

// The folder holding `rel`, resolved beneath the root, and the entry's name.
Fd OpenParent(int rootFd, const std::string& rel, std::string& name, const char* syscall) {
  std::string parent;
  SplitLast(rel, parent, name);
  if (name.empty()) throw Error(Error::Kind::Errno, EBUSY, syscall, rel);  // the root itself
  return OpenOrThrow(rootFd, parent, O_PATH | O_DIRECTORY, syscall);
}

struct stat FstatOrThrow(int fd, const std::string& rel) {
  struct stat st;
  if (fstat(fd, &st) != 0) Throw(errno, "stat", rel);
  return st;
}

// The real open of an O_PATH fd already checked to be a regular file: through
// its /proc/self/fd link, which leads to that very inode whatever the guest
// has renamed since (a second path lookup could find a FIFO instead).
int Reopen(int pathFd, int flags, const std::string& rel) {
  const std::string proc = "/proc/self/fd/" + std::to_string(pathFd);
  const int fd = open(proc.c_str(), flags | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) Throw(errno, "open", rel);
  return fd;
}

// Refuses what host-side code must never open: folders (as Node does) and
// special files, which could block (FIFOs) or reach a driver (devices).
void RequireRegular(const struct stat& st, const std::string& rel, const char* dirSyscall) {
  if (S_ISDIR(st.st_mode)) throw Error(Error::Kind::Errno, EISDIR, dirSyscall, rel);
  if (S_ISLNK(st.st_mode)) throw Error(Error::Kind::Errno, ELOOP, "open", rel);
  if (!S_ISREG(st.st_mode)) throw Error(Error::Kind::Special, 0, "open", rel, st.st_mode & S_IFMT);
}

// Removes an existing entry of that name unless it is a folder: a copied or
// unpacked entry replaces what was there and is never written through it.
Fd OpenParentReplacing(const std::string& root, const std::string& rel, std::string& name, const char* syscall) {
  Fd rootFd = OpenRoot(root);
  Fd dir = OpenParent(rootFd.get(), rel, name, syscall);
  struct stat st;
  if (fstatat(dir.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode))
    unlinkat(dir.get(), name.c_str(), 0);
  return dir;
}

}  // namespace

Error::Error(Kind kind, int err, std::string syscall, std::string path, mode_t type)
    : std::runtime_error(Describe(kind, err, syscall, path, type)),
      kind(kind),
      err(err),
      syscall(std::move(syscall)),
      path(std::move(path)),
      type(type) {}

const char* TypeName(mode_t type) {
  switch (type & S_IFMT) {
    case S_IFIFO: return "FIFO";
    case S_IFCHR: return "character device";
    case S_IFBLK: return "block device";
    case S_IFSOCK: return "socket";
    case S_IFLNK: return "symlink";
    case S_IFDIR: return "directory";
    case S_IFREG: return "file";
    default: return "special file";
  }
}

Opened OpenRead(const std::string& root, const std::string& rel, bool follow) {
  Fd rootFd = OpenRoot(root);
  Fd path = OpenOrThrow(rootFd.get(), rel, O_PATH | (follow ? 0 : O_NOFOLLOW));
  const struct stat st = FstatOrThrow(path.get(), rel);
  RequireRegular(st, rel, "read");
  return {Reopen(path.get(), O_RDONLY, rel), static_cast<uint64_t>(st.st_size)};
}

int OpenWrite(const std::string& root, const std::string& rel, uint32_t mode, WriteMode how) {
  Fd rootFd = OpenRoot(root);
  int err = 0;
  for (int i = 0; i < kCreateRetries; i++) {
    Fd path(OpenAt(rootFd.get(), rel, O_PATH));
    if (!path.valid()) {
      if (errno != ENOENT) Throw(errno, "open", rel);
      // Missing: create it, never opening what a guest may have put there
      // meanwhile (O_EXCL also refuses a dangling symlink).
      const int fd = OpenAt(rootFd.get(), rel, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_NONBLOCK, mode & 07777);
      if (fd >= 0) return fd;
      err = errno;
      if (err == EEXIST) continue;
      Throw(err, "open", rel);
    }
    if (how == WriteMode::Exclusive) throw Error(Error::Kind::Errno, EEXIST, "open", rel);
    RequireRegular(FstatOrThrow(path.get(), rel), rel, "open");
    Fd fd(Reopen(path.get(), O_WRONLY | (how == WriteMode::Append ? O_APPEND : 0), rel));
    if (how == WriteMode::Truncate && ftruncate(fd.get(), 0) != 0) Throw(errno, "open", rel);
    return fd.release();
  }
  Throw(err, "open", rel);
}

std::vector<DirEntry> Readdir(const std::string& root, const std::string& rel, size_t maxEntries) {
  Fd rootFd = OpenRoot(root);
  // O_DIRECTORY is checked before anything is opened: never a FIFO or device.
  Fd fd = OpenOrThrow(rootFd.get(), rel, O_RDONLY | O_DIRECTORY, "scandir");
  DIR* d = fdopendir(fd.get());
  if (!d) Throw(errno, "scandir", rel);
  fd.release();  // owned by `d`
  std::vector<DirEntry> out;
  errno = 0;
  while (dirent* e = readdir(d)) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    if (out.size() == maxEntries) {
      closedir(d);
      Throw(EOVERFLOW, "scandir", rel);
    }
    unsigned char type = e->d_type;
    struct stat st;
    if (type == DT_UNKNOWN && fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0)
      type = S_ISDIR(st.st_mode) ? DT_DIR : S_ISREG(st.st_mode) ? DT_REG : S_ISLNK(st.st_mode) ? DT_LNK : DT_UNKNOWN;
    out.push_back({e->d_name, type == DT_DIR ? "directory" : type == DT_REG ? "file" : type == DT_LNK ? "symlink" : "other"});
  }
  const int err = errno;
  closedir(d);
  if (err != 0) Throw(err, "scandir", rel);
  return out;
}

struct stat Stat(const std::string& root, const std::string& rel, bool follow) {
  Fd rootFd = OpenRoot(root);
  const char* syscall = follow ? "stat" : "lstat";
  Fd fd = OpenOrThrow(rootFd.get(), rel, O_PATH | (follow ? 0 : O_NOFOLLOW), syscall);
  struct stat st;
  if (fstat(fd.get(), &st) != 0) Throw(errno, syscall, rel);
  return st;
}

std::string Readlink(const std::string& root, const std::string& rel) {
  Fd rootFd = OpenRoot(root);
  Fd fd = OpenOrThrow(rootFd.get(), rel, O_PATH | O_NOFOLLOW, "readlink");
  char buf[PATH_MAX];
  const ssize_t n = readlinkat(fd.get(), "", buf, sizeof buf);
  if (n < 0) Throw(errno, "readlink", rel);
  if (static_cast<size_t>(n) == sizeof buf) Throw(ENAMETOOLONG, "readlink", rel);
  return std::string(buf, static_cast<size_t>(n));
}

void Mkdir(const std::string& root, const std::string& rel, uint32_t mode, bool existOk) {
  Fd rootFd = OpenRoot(root);
  std::string name;
  if (rel.empty()) {
    if (existOk) return;
    throw Error(Error::Kind::Errno, EEXIST, "mkdir", rel);
  }
  Fd dir = OpenParent(rootFd.get(), rel, name, "mkdir");
  if (mkdirat(dir.get(), name.c_str(), mode & 07777) != 0 && !(errno == EEXIST && existOk)) Throw(errno, "mkdir", rel);
}

void Remove(const std::string& root, const std::string& rel, bool recursive, bool allowEmptyDir) {
  Fd rootFd = OpenRoot(root);
  std::string name;
  Fd dir = OpenParent(rootFd.get(), rel, name, "rm");
  struct stat st;
  if (fstatat(dir.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) Throw(errno, "rm", rel);
  if (!S_ISDIR(st.st_mode)) {
    if (unlinkat(dir.get(), name.c_str(), 0) != 0) Throw(errno, "rm", rel);
  } else if (recursive) {
    if (!RemoveTreeAt(dir.get(), name.c_str())) Throw(errno, "rm", rel);
  } else if (!allowEmptyDir) {
    throw Error(Error::Kind::Errno, EISDIR, "rm", rel);
  } else if (unlinkat(dir.get(), name.c_str(), AT_REMOVEDIR) != 0) {
    Throw(errno, "rm", rel);
  }
}

void Rename(const std::string& root, const std::string& from, const std::string& to) {
  Fd rootFd = OpenRoot(root);
  std::string fromName, toName;
  Fd fromDir = OpenParent(rootFd.get(), from, fromName, "rename");
  Fd toDir = OpenParent(rootFd.get(), to, toName, "rename");
  if (renameat(fromDir.get(), fromName.c_str(), toDir.get(), toName.c_str()) != 0)
    throw Error(Error::Kind::Errno, errno, "rename", from);  // EXDEV here is a mount boundary
}

int Create(const std::string& root, const std::string& rel, uint32_t mode) {
  std::string name;
  Fd dir = OpenParentReplacing(root, rel, name, "open");
  const int fd = openat(dir.get(), name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode & 07777);
  if (fd < 0) Throw(errno, "open", rel);
  return fd;
}

void Symlink(const std::string& root, const std::string& rel, const std::string& target) {
  std::string name;
  Fd dir = OpenParentReplacing(root, rel, name, "symlink");
  // The link's text is stored, never followed here.
  if (symlinkat(target.c_str(), dir.get(), name.c_str()) != 0) Throw(errno, "symlink", rel);
}

void Link(const std::string& root, const std::string& rel, const std::string& existingRel) {
  Fd rootFd = OpenRoot(root);
  Fd src = OpenOrThrow(rootFd.get(), existingRel, O_PATH | O_NOFOLLOW, "link");
  std::string name;
  Fd dir = OpenParentReplacing(root, rel, name, "link");
  // Through /proc: linkat's AT_EMPTY_PATH would need CAP_DAC_READ_SEARCH.
  const std::string proc = "/proc/self/fd/" + std::to_string(src.get());
  if (linkat(AT_FDCWD, proc.c_str(), dir.get(), name.c_str(), AT_SYMLINK_FOLLOW) != 0) Throw(errno, "link", rel);
}

int OpenDir(const std::string& root, const std::string& rel, bool follow) {
  Fd rootFd = OpenRoot(root);
  return OpenOrThrow(rootFd.get(), rel, O_RDONLY | O_DIRECTORY | (follow ? 0 : O_NOFOLLOW)).release();
}

}  // namespace beneath
}  // namespace krunbox
