// The file service's framing and its single-file operations.
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/fs_worker.h"
#include "common/fs_protocol.h"
#include "common/exec_protocol.h"
#include "common/frame.h"
#include "common/posix.h"

namespace agent {

using nlohmann::json;

namespace {

// ENTRIES frames are cut at about this size (JSON arrays of [name, type]).
constexpr size_t kEntriesBatch = 64 * 1024;

bool ReadFull(int fd, char* buf, size_t n) {
  while (n > 0) {
    const ssize_t r = read(fd, buf, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    buf += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

double Ms(const timespec& t) { return static_cast<double>(t.tv_sec) * 1e3 + static_cast<double>(t.tv_nsec) / 1e6; }

json StatJson(const struct stat& st) {
  return {{"dev", st.st_dev},       {"ino", st.st_ino},         {"mode", st.st_mode},      {"nlink", st.st_nlink},
          {"uid", st.st_uid},       {"gid", st.st_gid},         {"rdev", st.st_rdev},      {"size", st.st_size},
          {"blksize", st.st_blksize}, {"blocks", st.st_blocks}, {"atimeMs", Ms(st.st_atim)}, {"mtimeMs", Ms(st.st_mtim)},
          {"ctimeMs", Ms(st.st_ctim)}};
}

const char* DirentType(unsigned char t) {
  return t == DT_DIR ? "directory" : t == DT_REG ? "file" : t == DT_LNK ? "symlink" : "other";
}

void Stat(FsConn& c, const std::string& path, bool follow) {
  struct stat st;
  if ((follow ? stat(path.c_str(), &st) : lstat(path.c_str(), &st)) != 0) ThrowFs(follow ? "stat" : "lstat", path);
  c.Ok(StatJson(st));
}

void Readdir(FsConn& c, const std::string& path) {
  DIR* d = opendir(path.c_str());
  if (!d) ThrowFs("scandir", path);
  json batch = json::array();
  size_t size = 0;
  errno = 0;
  while (dirent* e = readdir(d)) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    unsigned char type = e->d_type;
    struct stat st;
    if (type == DT_UNKNOWN && fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0)
      type = S_ISDIR(st.st_mode) ? DT_DIR : S_ISREG(st.st_mode) ? DT_REG : S_ISLNK(st.st_mode) ? DT_LNK : DT_UNKNOWN;
    batch.push_back(json::array({e->d_name, DirentType(type)}));
    size += strlen(e->d_name) + 20;
    if (size >= kEntriesBatch) {
      c.Send(krunbox::kFsEntries, batch.dump(-1, ' ', false, json::error_handler_t::replace));
      batch = json::array();
      size = 0;
    }
  }
  const int err = errno;
  closedir(d);
  if (err != 0) {
    errno = err;
    ThrowFs("scandir", path);
  }
  if (!batch.empty()) c.Send(krunbox::kFsEntries, batch.dump(-1, ' ', false, json::error_handler_t::replace));
  c.Ok();
}

void Mkdir(FsConn& c, const std::string& path, bool recursive, mode_t mode) {
  if (!recursive) {
    if (mkdir(path.c_str(), mode) != 0) ThrowFs("mkdir", path);
    return c.Ok();
  }
  // Each missing ancestor in turn; an existing one must be a folder.
  for (size_t slash = path.find('/', 1);; slash = path.find('/', slash + 1)) {
    const std::string part = path.substr(0, slash);
    if (mkdir(part.c_str(), mode) != 0) {
      struct stat st;
      if (errno != EEXIST) ThrowFs("mkdir", part);
      if (stat(part.c_str(), &st) != 0) ThrowFs("mkdir", part);
      if (!S_ISDIR(st.st_mode)) {
        errno = slash == std::string::npos ? EEXIST : ENOTDIR;
        ThrowFs("mkdir", part);
      }
    }
    if (slash == std::string::npos) break;
  }
  c.Ok();
}

void Rm(FsConn& c, const std::string& path, bool recursive, bool force) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT && force) return c.Ok();
    ThrowFs("rm", path);
  }
  if (S_ISDIR(st.st_mode)) {
    if (!recursive) {
      errno = EISDIR;
      ThrowFs("rm", path);
    }
    if (!krunbox::RemoveTreeAt(AT_FDCWD, path.c_str())) ThrowFs("rm", path);
  } else if (unlink(path.c_str()) != 0) {
    ThrowFs("rm", path);
  }
  c.Ok();
}

void Read(FsConn& c, const std::string& path) {
  krunbox::Fd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) ThrowFs("open", path);
  struct stat st;
  if (fstat(fd.get(), &st) != 0) ThrowFs("stat", path);
  if (S_ISDIR(st.st_mode)) {
    errno = EISDIR;
    ThrowFs("read", path);
  }
  c.Ok({{"size", st.st_size}});
  SendFileData(c, fd.get(), path);
}

void Write(FsConn& c, const std::string& path, mode_t mode, const std::string& flags) {
  const int how = flags == "wx" ? O_CREAT | O_EXCL : flags == "a" ? O_CREAT | O_APPEND : O_CREAT | O_TRUNC;
  krunbox::Fd fd(open(path.c_str(), O_WRONLY | O_CLOEXEC | how, mode));
  if (!fd.valid()) ThrowFs("open", path);
  c.Ok();
  if (!ReceiveFileData(c, fd.get(), path)) return;
  if (close(fd.release()) != 0) ThrowFs("close", path);
  c.Ok();
}

// Paths from the host: absolute, without NUL, at most PATH_MAX.
std::string PathArg(const json& req, const char* key) {
  const std::string p = req.at(key).get<std::string>();
  if (p.empty() || p[0] != '/' || p.size() > krunbox::kFsMaxPath || p.find('\0') != std::string::npos) {
    errno = EINVAL;
    ThrowFs("request", p.substr(0, 256));
  }
  return p;
}

}  // namespace

void ThrowFs(const std::string& syscall, const std::string& path) { throw FsFailure{errno, syscall, path}; }

bool FsConn::Read(uint8_t& type, std::string& payload) {
  char header[krunbox::kFrameHeader];
  if (!ReadFull(fd_, header, sizeof header)) return false;
  const uint32_t len = krunbox::FrameLength(header);
  if (len == 0 || len > krunbox::kMaxFrame) return false;
  type = static_cast<uint8_t>(header[4]);
  payload.resize(len - 1);
  return ReadFull(fd_, payload.data(), len - 1);
}

void FsConn::Send(uint8_t type, const char* data, size_t size) {
  // Header and payload apart: file data is not copied into a frame first.
  const auto header = krunbox::FrameHeader(type, size);
  if (!krunbox::WriteAll(fd_, header.data(), header.size()) || !krunbox::WriteAll(fd_, data, size)) _exit(0);
}

void FsConn::Ok(const json& j) { Send(krunbox::kFsOk, j.dump()); }

void FsConn::Fail(const FsFailure& f) {
  Send(krunbox::kFsError, json{{"errno", f.err}, {"syscall", f.syscall}, {"path", f.path}}.dump(-1, ' ', false, json::error_handler_t::replace));
}

void FsConn::SkipTo(uint8_t end) {
  uint8_t type;
  std::string payload;
  while (Read(type, payload))
    if (type == end) return;
  _exit(0);
}

void SendFileData(FsConn& c, int fd, const std::string& path) {
  std::string buf(krunbox::kFsChunk, '\0');
  for (;;) {
    const ssize_t n = read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) ThrowFs("read", path);
    if (n == 0) break;
    c.Send(krunbox::kFsData, buf.data(), static_cast<size_t>(n));
  }
  c.Send(krunbox::kFsEnd, "");
}

bool ReceiveFileData(FsConn& c, int fd, const std::string& path) {
  uint8_t type;
  std::string payload;
  while (c.Read(type, payload)) {
    if (type == krunbox::kFsEnd) return true;
    if (type != krunbox::kFsData) _exit(0);
    if (!krunbox::WriteAll(fd, payload)) {
      c.Fail({errno, "write", path});
      c.SkipTo(krunbox::kFsEnd);
      return false;
    }
  }
  _exit(0);
}

void HandleRequest(FsConn& c, const json& req) {
  try {
    const std::string op = req.at("op").get<std::string>();
    if (op == "stat") return Stat(c, PathArg(req, "path"), req.value("follow", true));
    if (op == "readdir") return Readdir(c, PathArg(req, "path"));
    if (op == "mkdir") return Mkdir(c, PathArg(req, "path"), req.value("recursive", false), req.value("mode", 0777u) & 07777);
    if (op == "rm") return Rm(c, PathArg(req, "path"), req.value("recursive", false), req.value("force", false));
    if (op == "rename") {
      const std::string from = PathArg(req, "from"), to = PathArg(req, "to");
      if (rename(from.c_str(), to.c_str()) != 0) ThrowFs("rename", from);
      return c.Ok();
    }
    if (op == "read") return Read(c, PathArg(req, "path"));
    if (op == "write") return Write(c, PathArg(req, "path"), req.value("mode", 0666u) & 07777, req.value("flags", std::string("w")));
    if (op == "copyIn") return CopyIn(c, PathArg(req, "path"));
    if (op == "copyOut") return CopyOut(c, PathArg(req, "path"));
    if (op == "watch") return Watch(c, PathArg(req, "path"), req.value("recursive", false));
    errno = ENOSYS;
    ThrowFs(op.substr(0, 64), "");
  } catch (const FsFailure& f) {
    c.Fail(f);
  } catch (const json::exception&) {
    c.Fail({EINVAL, "request", ""});
  }
}

}  // namespace agent
