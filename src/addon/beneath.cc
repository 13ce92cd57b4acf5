// Host-side file access inside a folder that a guest can write to. Every
// path is resolved by the kernel with openat2(RESOLVE_BENEATH |
// RESOLVE_NO_MAGICLINKS): symlinks (absolute, "../..", /proc magic links)
// and races with the guest can never lead outside the folder. Removal never
// follows symlinks at all.
#include "addon/beneath.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "common/posix.h"

namespace krunbox {
namespace {

constexpr size_t kMaxReadBytes = 1ull << 30;

Napi::Error ErrnoError(Napi::Env env, const std::string& what, int err) {
  Napi::Error e = Napi::Error::New(env, what + ": " + strerror(err));
  e.Set("code", Napi::String::New(env, err == EXDEV ? "ERR_KRUNBOX_PATH_ESCAPE" : "ERR_KRUNBOX_FS"));
  e.Set("errno", Napi::Number::New(env, err));
  return e;
}

// The folder everything else is resolved beneath; throws if it can't be opened.
int OpenRoot(Napi::Env env, const std::string& root) {
  const int fd = open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw ErrnoError(env, "open " + root, errno);
  return fd;
}

int OpenBeneath(int rootFd, const std::string& rel, uint64_t flags, uint64_t mode) {
  open_how how{};
  how.flags = flags | O_CLOEXEC;
  how.mode = mode;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
  const std::string path = rel.empty() ? "." : rel;
  return static_cast<int>(syscall(SYS_openat2, rootFd, path.c_str(), &how, sizeof how));
}

// Splits "a/b/c" into the parent "a/b" and the last component "c".
void SplitLast(const std::string& rel, std::string& parent, std::string& name) {
  const size_t slash = rel.find_last_of('/');
  parent = slash == std::string::npos ? "" : rel.substr(0, slash);
  name = slash == std::string::npos ? rel : rel.substr(slash + 1);
}

struct Args {
  std::string root, rel;
};

// (root, rel): rel is relative to root, already normalized by lib/ (no
// leading '/', no "." or ".." parts); the kernel enforces the rest.
bool GetArgs(const Napi::CallbackInfo& info, Args& a) {
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString()) {
    Napi::TypeError::New(info.Env(), "expected (root: string, path: string, ...)").ThrowAsJavaScriptException();
    return false;
  }
  a.root = info[0].As<Napi::String>();
  a.rel = info[1].As<Napi::String>();
  return true;
}

Napi::Value ReadFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Args a;
  if (!GetArgs(info, a)) return env.Undefined();
  Fd root(OpenRoot(env, a.root));
  Fd fd(OpenBeneath(root.get(), a.rel, O_RDONLY, 0));
  if (fd.get() < 0) throw ErrnoError(env, "open " + a.rel, errno);
  struct stat st;
  if (fstat(fd.get(), &st) != 0) throw ErrnoError(env, "stat " + a.rel, errno);
  if (!S_ISREG(st.st_mode)) throw ErrnoError(env, a.rel, EISDIR);
  std::string data;
  char buf[65536];
  for (;;) {
    ssize_t n = read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw ErrnoError(env, "read " + a.rel, errno);
    if (n == 0) break;
    data.append(buf, static_cast<size_t>(n));
    if (data.size() > kMaxReadBytes) throw ErrnoError(env, a.rel, EFBIG);
  }
  return Napi::Buffer<char>::Copy(env, data.data(), data.size());
}

// writeFile(root, rel, data: Buffer, mode): create or truncate; a symlink
// is followed only while it stays beneath the root.
Napi::Value WriteFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Args a;
  if (!GetArgs(info, a)) return env.Undefined();
  if (info.Length() < 3 || !info[2].IsBuffer()) throw Napi::TypeError::New(env, "data must be a Buffer");
  const Napi::Buffer<char> data = info[2].As<Napi::Buffer<char>>();
  const uint32_t mode = info.Length() > 3 && info[3].IsNumber() ? info[3].As<Napi::Number>().Uint32Value() : 0644;
  Fd root(OpenRoot(env, a.root));
  Fd fd(OpenBeneath(root.get(), a.rel, O_WRONLY | O_CREAT | O_TRUNC, mode & 0777));
  if (fd.get() < 0) throw ErrnoError(env, "open " + a.rel, errno);
  size_t off = 0;
  while (off < data.Length()) {
    ssize_t n = write(fd.get(), data.Data() + off, data.Length() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw ErrnoError(env, "write " + a.rel, errno);
    off += static_cast<size_t>(n);
  }
  return env.Undefined();
}

Napi::Value Readdir(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Args a;
  if (!GetArgs(info, a)) return env.Undefined();
  Fd root(OpenRoot(env, a.root));
  const int fd = OpenBeneath(root.get(), a.rel, O_RDONLY | O_DIRECTORY, 0);
  if (fd < 0) throw ErrnoError(env, "open " + a.rel, errno);
  DIR* d = fdopendir(fd);
  if (!d) {
    close(fd);
    throw ErrnoError(env, "readdir " + a.rel, errno);
  }
  Napi::Array out = Napi::Array::New(env);
  uint32_t i = 0;
  while (dirent* e = readdir(d)) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    Napi::Object entry = Napi::Object::New(env);
    entry.Set("name", e->d_name);
    const char* type = e->d_type == DT_DIR ? "directory" : e->d_type == DT_REG ? "file" : e->d_type == DT_LNK ? "symlink" : "other";
    entry.Set("type", type);
    out.Set(i++, entry);
  }
  closedir(d);
  return out;
}

Napi::Value Mkdir(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Args a;
  if (!GetArgs(info, a)) return env.Undefined();
  Fd root(OpenRoot(env, a.root));
  std::string parent, name;
  SplitLast(a.rel, parent, name);
  Fd dir(OpenBeneath(root.get(), parent, O_PATH | O_DIRECTORY, 0));
  if (dir.get() < 0) throw ErrnoError(env, "open " + parent, errno);
  if (mkdirat(dir.get(), name.c_str(), 0755) != 0 && errno != EEXIST) throw ErrnoError(env, "mkdir " + a.rel, errno);
  return env.Undefined();
}

// rm(root, rel, recursive): the parent is resolved beneath the root; the
// entry itself is removed without following it if it is a symlink.
Napi::Value Rm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Args a;
  if (!GetArgs(info, a)) return env.Undefined();
  const bool recursive = info.Length() > 2 && info[2].ToBoolean();
  Fd root(OpenRoot(env, a.root));
  std::string parent, name;
  SplitLast(a.rel, parent, name);
  Fd dir(OpenBeneath(root.get(), parent, O_RDONLY | O_DIRECTORY, 0));
  if (dir.get() < 0) throw ErrnoError(env, "open " + parent, errno);
  struct stat st;
  if (fstatat(dir.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) throw ErrnoError(env, "rm " + a.rel, errno);
  if (S_ISDIR(st.st_mode) && !recursive) {
    if (unlinkat(dir.get(), name.c_str(), AT_REMOVEDIR) != 0) throw ErrnoError(env, "rm " + a.rel, errno);
  } else if (!RemoveTreeAt(dir.get(), name.c_str())) {
    throw ErrnoError(env, "rm " + a.rel, errno);
  }
  return env.Undefined();
}

// The folder that holds `rel`, resolved beneath the root, and the entry's
// name in it; an existing non-folder entry of that name is removed first
// (a tar entry replaces what was there, and is never written through it).
int OpenParentReplacing(Napi::Env env, const Args& a, std::string& name) {
  Fd root(OpenRoot(env, a.root));
  std::string parent;
  SplitLast(a.rel, parent, name);
  const int dir = OpenBeneath(root.get(), parent, O_PATH | O_DIRECTORY, 0);
  if (dir < 0) throw ErrnoError(env, "open " + parent, errno);
  struct stat st;
  if (fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode)) unlinkat(dir, name.c_str(), 0);
  return dir;
}

// createBeneath(root, rel, mode) -> fd open for writing a new file.
Napi::Value Create(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Args a;
  if (!GetArgs(info, a)) return env.Undefined();
  const uint32_t mode = info.Length() > 2 && info[2].IsNumber() ? info[2].As<Napi::Number>().Uint32Value() : 0644;
  std::string name;
  Fd dir(OpenParentReplacing(env, a, name));
  const int fd = openat(dir.get(), name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode & 07777);
  if (fd < 0) throw ErrnoError(env, "create " + a.rel, errno);
  return Napi::Number::New(env, fd);
}

// symlinkBeneath(root, rel, target): the link's text is never followed here.
Napi::Value Symlink(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Args a;
  if (!GetArgs(info, a)) return env.Undefined();
  const std::string target = info[2].As<Napi::String>();
  std::string name;
  Fd dir(OpenParentReplacing(env, a, name));
  if (symlinkat(target.c_str(), dir.get(), name.c_str()) != 0) throw ErrnoError(env, "symlink " + a.rel, errno);
  return env.Undefined();
}

// linkBeneath(root, rel, existingRel): a hard link to an entry beneath the root.
Napi::Value Link(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Args a;
  if (!GetArgs(info, a)) return env.Undefined();
  const std::string existing = info[2].As<Napi::String>();
  Fd root(OpenRoot(env, a.root));
  Fd src(OpenBeneath(root.get(), existing, O_PATH | O_NOFOLLOW, 0));
  if (src.get() < 0) throw ErrnoError(env, "open " + existing, errno);
  std::string name;
  Fd dir(OpenParentReplacing(env, a, name));
  // Through /proc: linkat's AT_EMPTY_PATH would need CAP_DAC_READ_SEARCH.
  const std::string proc = "/proc/self/fd/" + std::to_string(src.get());
  if (linkat(AT_FDCWD, proc.c_str(), dir.get(), name.c_str(), AT_SYMLINK_FOLLOW) != 0)
    throw ErrnoError(env, "link " + a.rel, errno);
  return env.Undefined();
}

// openDirBeneath(root, rel) -> fd of a folder beneath the root (for fchmod/fchown).
Napi::Value OpenDir(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Args a;
  if (!GetArgs(info, a)) return env.Undefined();
  Fd root(OpenRoot(env, a.root));
  const int fd = OpenBeneath(root.get(), a.rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0);
  if (fd < 0) throw ErrnoError(env, "open " + a.rel, errno);
  return Napi::Number::New(env, fd);
}

// flock(path, exclusive) -> fd, or -1 if another holder conflicts.
Napi::Value Flock(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string path = info[0].As<Napi::String>();
  const bool exclusive = info[1].ToBoolean();
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) throw ErrnoError(env, "open " + path, errno);
  if (flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) != 0) {
    const int err = errno;
    close(fd);
    if (err == EWOULDBLOCK) return Napi::Number::New(env, -1);
    throw ErrnoError(env, "flock " + path, err);
  }
  return Napi::Number::New(env, fd);
}

Napi::Value Unlock(const Napi::CallbackInfo& info) {
  const int fd = info[0].As<Napi::Number>().Int32Value();
  if (fd >= 0) close(fd);
  return info.Env().Undefined();
}

}  // namespace

void InitBeneath(Napi::Env env, Napi::Object exports) {
  exports.Set("readFileBeneath", Napi::Function::New(env, ReadFile));
  exports.Set("writeFileBeneath", Napi::Function::New(env, WriteFile));
  exports.Set("readdirBeneath", Napi::Function::New(env, Readdir));
  exports.Set("mkdirBeneath", Napi::Function::New(env, Mkdir));
  exports.Set("rmBeneath", Napi::Function::New(env, Rm));
  exports.Set("createBeneath", Napi::Function::New(env, Create));
  exports.Set("symlinkBeneath", Napi::Function::New(env, Symlink));
  exports.Set("linkBeneath", Napi::Function::New(env, Link));
  exports.Set("openDirBeneath", Napi::Function::New(env, OpenDir));
  exports.Set("flock", Napi::Function::New(env, Flock));
  exports.Set("unlock", Napi::Function::New(env, Unlock));
}

}  // namespace krunbox
