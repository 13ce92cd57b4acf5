// N-API bindings of beneath_ops.h. Each operation is exported twice from
// one implementation: under `beneath` as an asynchronous function that runs
// on libuv's thread pool and returns a Promise (volumes, copies: a guest can
// make these slow, and Node's event loop must keep running), and as a
// synchronous `<name>Beneath` for image unpacking, which does small steps
// in krunbox's own cache. Plus the advisory locks of volumes and images.
#include "addon/beneath.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "addon/beneath_ops.h"

namespace krunbox {
namespace {

namespace b = beneath;

// A folder a guest filled may be large, but never more than this many
// entries are turned into JavaScript objects at once.
constexpr size_t kMaxDirEntries = 1 << 20;

Napi::Error ToJs(Napi::Env env, const b::Error& e) {
  Napi::Error err = Napi::Error::New(env, e.what());
  const char* code = e.kind == b::Error::Kind::Escape    ? "ERR_KRUNBOX_PATH_ESCAPE"
                     : e.kind == b::Error::Kind::Special ? "ERR_KRUNBOX_SPECIAL_FILE"
                                                         : "ERR_KRUNBOX_FS";
  err.Set("code", code);
  err.Set("errno", Napi::Number::New(env, e.err));
  err.Set("syscall", e.syscall);
  err.Set("path", e.path);
  if (e.kind == b::Error::Kind::Special) err.Set("fileType", b::TypeName(e.type));
  return err;
}

std::string Str(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || !info[i].IsString())
    throw Napi::TypeError::New(info.Env(), "argument " + std::to_string(i) + " must be a string");
  return info[i].As<Napi::String>();
}

uint32_t Uint(const Napi::CallbackInfo& info, size_t i, uint32_t fallback) {
  return info.Length() > i && info[i].IsNumber() ? info[i].As<Napi::Number>().Uint32Value() : fallback;
}

bool Bool(const Napi::CallbackInfo& info, size_t i, bool fallback) {
  return info.Length() > i && info[i].IsBoolean() ? info[i].As<Napi::Boolean>().Value() : fallback;
}

// Every operation: arguments parsed on the JS thread by its constructor,
// Run() anywhere (no N-API), Result() on the JS thread.
struct Nothing {
  Napi::Value Result(Napi::Env env) { return env.Undefined(); }
};

struct FdResult {
  int fd = -1;
  Napi::Value Result(Napi::Env env) { return Napi::Number::New(env, fd); }
};

// openRead(root, rel, follow = true) -> { fd, size }
struct OpenReadOp {
  std::string root, rel;
  bool follow;
  b::Opened out{};
  explicit OpenReadOp(const Napi::CallbackInfo& info) : root(Str(info, 0)), rel(Str(info, 1)), follow(Bool(info, 2, true)) {}
  void Run() { out = b::OpenRead(root, rel, follow); }
  Napi::Value Result(Napi::Env env) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("fd", static_cast<double>(out.fd));
    o.Set("size", Napi::Number::New(env, static_cast<double>(out.size)));
    return o;
  }
};

// openWrite(root, rel, mode, flags: "w" | "wx" | "a") -> fd
struct OpenWriteOp : FdResult {
  std::string root, rel;
  uint32_t mode;
  b::WriteMode how;
  explicit OpenWriteOp(const Napi::CallbackInfo& info) : root(Str(info, 0)), rel(Str(info, 1)), mode(Uint(info, 2, 0644)) {
    const std::string flags = Str(info, 3);
    how = flags == "wx" ? b::WriteMode::Exclusive : flags == "a" ? b::WriteMode::Append : b::WriteMode::Truncate;
  }
  void Run() { fd = b::OpenWrite(root, rel, mode, how); }
};

// readdir(root, rel) -> [{ name, type }]
struct ReaddirOp {
  std::string root, rel;
  std::vector<b::DirEntry> out;
  explicit ReaddirOp(const Napi::CallbackInfo& info) : root(Str(info, 0)), rel(Str(info, 1)) {}
  void Run() { out = b::Readdir(root, rel, kMaxDirEntries); }
  Napi::Value Result(Napi::Env env) {
    Napi::Array arr = Napi::Array::New(env, out.size());
    for (uint32_t i = 0; i < out.size(); i++) {
      Napi::Object e = Napi::Object::New(env);
      e.Set("name", out[i].name);
      e.Set("type", out[i].type);
      arr.Set(i, e);
    }
    return arr;
  }
};

// stat(root, rel, follow) -> the fields of struct stat (times in ms)
struct StatOp {
  std::string root, rel;
  bool follow;
  struct stat st {};
  explicit StatOp(const Napi::CallbackInfo& info) : root(Str(info, 0)), rel(Str(info, 1)), follow(Bool(info, 2, true)) {}
  void Run() { st = b::Stat(root, rel, follow); }
  Napi::Value Result(Napi::Env env) {
    Napi::Object o = Napi::Object::New(env);
    auto ms = [](const timespec& t) { return static_cast<double>(t.tv_sec) * 1e3 + static_cast<double>(t.tv_nsec) / 1e6; };
    o.Set("dev", static_cast<double>(st.st_dev));
    o.Set("ino", static_cast<double>(st.st_ino));
    o.Set("mode", static_cast<double>(st.st_mode));
    o.Set("nlink", static_cast<double>(st.st_nlink));
    o.Set("uid", static_cast<double>(st.st_uid));
    o.Set("gid", static_cast<double>(st.st_gid));
    o.Set("rdev", static_cast<double>(st.st_rdev));
    o.Set("size", static_cast<double>(st.st_size));
    o.Set("blksize", static_cast<double>(st.st_blksize));
    o.Set("blocks", static_cast<double>(st.st_blocks));
    o.Set("atimeMs", ms(st.st_atim));
    o.Set("mtimeMs", ms(st.st_mtim));
    o.Set("ctimeMs", ms(st.st_ctim));
    return o;
  }
};

struct ReadlinkOp {
  std::string root, rel, out;
  explicit ReadlinkOp(const Napi::CallbackInfo& info) : root(Str(info, 0)), rel(Str(info, 1)) {}
  void Run() { out = b::Readlink(root, rel); }
  Napi::Value Result(Napi::Env env) { return Napi::String::New(env, out); }
};

// mkdir(root, rel, mode = 0755, existOk = true)
struct MkdirOp : Nothing {
  std::string root, rel;
  uint32_t mode;
  bool existOk;
  explicit MkdirOp(const Napi::CallbackInfo& info)
      : root(Str(info, 0)), rel(Str(info, 1)), mode(Uint(info, 2, 0755)), existOk(Bool(info, 3, true)) {}
  void Run() { b::Mkdir(root, rel, mode, existOk); }
};

// rm(root, rel, recursive, allowEmptyDir = true)
struct RmOp : Nothing {
  std::string root, rel;
  bool recursive, allowEmptyDir;
  explicit RmOp(const Napi::CallbackInfo& info)
      : root(Str(info, 0)), rel(Str(info, 1)), recursive(Bool(info, 2, false)), allowEmptyDir(Bool(info, 3, true)) {}
  void Run() { b::Remove(root, rel, recursive, allowEmptyDir); }
};

struct RenameOp : Nothing {
  std::string root, from, to;
  explicit RenameOp(const Napi::CallbackInfo& info) : root(Str(info, 0)), from(Str(info, 1)), to(Str(info, 2)) {}
  void Run() { b::Rename(root, from, to); }
};

// create(root, rel, mode) -> fd of a new file
struct CreateOp : FdResult {
  std::string root, rel;
  uint32_t mode;
  explicit CreateOp(const Napi::CallbackInfo& info) : root(Str(info, 0)), rel(Str(info, 1)), mode(Uint(info, 2, 0644)) {}
  void Run() { fd = b::Create(root, rel, mode); }
};

struct SymlinkOp : Nothing {
  std::string root, rel, target;
  explicit SymlinkOp(const Napi::CallbackInfo& info) : root(Str(info, 0)), rel(Str(info, 1)), target(Str(info, 2)) {}
  void Run() { b::Symlink(root, rel, target); }
};

struct LinkOp : Nothing {
  std::string root, rel, existing;
  explicit LinkOp(const Napi::CallbackInfo& info) : root(Str(info, 0)), rel(Str(info, 1)), existing(Str(info, 2)) {}
  void Run() { b::Link(root, rel, existing); }
};

// openDir(root, rel, follow = false) -> fd
struct OpenDirOp : FdResult {
  std::string root, rel;
  bool follow;
  explicit OpenDirOp(const Napi::CallbackInfo& info) : root(Str(info, 0)), rel(Str(info, 1)), follow(Bool(info, 2, false)) {}
  void Run() { fd = b::OpenDir(root, rel, follow); }
};

template <typename Op>
class OpWorker : public Napi::AsyncWorker {
 public:
  OpWorker(Napi::Env env, Op op) : Napi::AsyncWorker(env), op_(std::move(op)), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      op_.Run();
    } catch (const b::Error& e) {
      error_.emplace(e);
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override {
    if (error_) deferred_.Reject(ToJs(Env(), *error_).Value());
    else deferred_.Resolve(op_.Result(Env()));
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Op op_;
  Napi::Promise::Deferred deferred_;
  std::optional<b::Error> error_;
};

template <typename Op>
Napi::Value Async(const Napi::CallbackInfo& info) {
  auto* worker = new OpWorker<Op>(info.Env(), Op(info));  // deletes itself when done
  worker->Queue();
  return worker->Promise();
}

template <typename Op>
Napi::Value Sync(const Napi::CallbackInfo& info) {
  Op op(info);
  try {
    op.Run();
  } catch (const b::Error& e) {
    throw ToJs(info.Env(), e);
  }
  return op.Result(info.Env());
}

// flock(path, exclusive) -> fd, or -1 if another holder conflicts.
Napi::Value Flock(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string path = Str(info, 0);
  const bool exclusive = info[1].ToBoolean();
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) throw ToJs(env, b::Error(b::Error::Kind::Errno, errno, "open", path));
  if (flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) != 0) {
    const int err = errno;
    close(fd);
    if (err == EWOULDBLOCK) return Napi::Number::New(env, -1);
    throw ToJs(env, b::Error(b::Error::Kind::Errno, err, "flock", path));
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
  Napi::Object async = Napi::Object::New(env);
  async.Set("openRead", Napi::Function::New(env, Async<OpenReadOp>));
  async.Set("openWrite", Napi::Function::New(env, Async<OpenWriteOp>));
  async.Set("readdir", Napi::Function::New(env, Async<ReaddirOp>));
  async.Set("stat", Napi::Function::New(env, Async<StatOp>));
  async.Set("readlink", Napi::Function::New(env, Async<ReadlinkOp>));
  async.Set("mkdir", Napi::Function::New(env, Async<MkdirOp>));
  async.Set("rm", Napi::Function::New(env, Async<RmOp>));
  async.Set("rename", Napi::Function::New(env, Async<RenameOp>));
  async.Set("create", Napi::Function::New(env, Async<CreateOp>));
  async.Set("symlink", Napi::Function::New(env, Async<SymlinkOp>));
  async.Set("link", Napi::Function::New(env, Async<LinkOp>));
  async.Set("openDir", Napi::Function::New(env, Async<OpenDirOp>));
  exports.Set("beneath", async);

  exports.Set("readdirBeneath", Napi::Function::New(env, Sync<ReaddirOp>));
  exports.Set("mkdirBeneath", Napi::Function::New(env, Sync<MkdirOp>));
  exports.Set("rmBeneath", Napi::Function::New(env, Sync<RmOp>));
  exports.Set("createBeneath", Napi::Function::New(env, Sync<CreateOp>));
  exports.Set("symlinkBeneath", Napi::Function::New(env, Sync<SymlinkOp>));
  exports.Set("linkBeneath", Napi::Function::New(env, Sync<LinkOp>));
  exports.Set("openDirBeneath", Napi::Function::New(env, Sync<OpenDirOp>));
  exports.Set("flock", Napi::Function::New(env, Flock));
  exports.Set("unlock", Napi::Function::New(env, Unlock));
}

}  // namespace krunbox
