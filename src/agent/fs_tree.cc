// The file service's folder copies (copyIn, copyOut) and watches (inotify).
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <map>
#include <utility>
#include <vector>

#include "agent/fs_worker.h"
#include "common/fs_protocol.h"
#include "common/posix.h"

namespace agent {

using nlohmann::json;

namespace {

// What inotify reports, and how Node (libuv) names it.
constexpr uint32_t kWatchMask =
    IN_ATTRIB | IN_CREATE | IN_MODIFY | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF | IN_MOVED_FROM | IN_MOVED_TO;

std::string Join(const std::string& dir, const std::string& name) {
  if (name.empty()) return dir;
  return dir == "/" ? "/" + name : dir + "/" + name;
}

std::string RelJoin(const std::string& rel, const std::string& name) { return rel.empty() ? name : rel + "/" + name; }

// A relative path from the host: no empty, "." or ".." parts.
bool SafeRelative(const std::string& rel) {
  if (rel.empty()) return true;
  if (rel.size() > krunbox::kFsMaxPath || rel.find('\0') != std::string::npos) return false;
  size_t start = 0;
  for (;;) {
    const size_t slash = rel.find('/', start);
    const std::string part = rel.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
    if (part.empty() || part == "." || part == "..") return false;
    if (slash == std::string::npos) return true;
    start = slash + 1;
  }
}

// Clears the way for a new non-folder entry: what was there is replaced.
void RemoveNonDir(const std::string& target) {
  struct stat st;
  if (lstat(target.c_str(), &st) != 0) return;
  if (S_ISDIR(st.st_mode)) {
    errno = EISDIR;
    ThrowFs("open", target);
  }
  if (unlink(target.c_str()) != 0) ThrowFs("unlink", target);
}

// Applies one ENTRY; for a file, receives its data. False when a write
// failed (already reported, the file's data skipped).
bool ApplyEntry(FsConn& c, const std::string& root, const json& e, std::vector<std::pair<std::string, mode_t>>& dirModes) {
  const std::string rel = e.at("path").get<std::string>();
  const std::string type = e.at("type").get<std::string>();
  const mode_t mode = e.value("mode", 0644u) & 07777;
  if (!SafeRelative(rel)) {
    errno = EINVAL;
    ThrowFs("copyIn", rel.substr(0, 256));
  }
  const std::string target = Join(root, rel);
  if (type == "directory") {
    struct stat st;
    // Writable until DONE, whatever its final mode.
    if (mkdir(target.c_str(), 0700) != 0 && !(errno == EEXIST && stat(target.c_str(), &st) == 0 && S_ISDIR(st.st_mode)))
      ThrowFs("mkdir", target);
    dirModes.emplace_back(target, mode);
  } else if (type == "file") {
    RemoveNonDir(target);
    krunbox::Fd fd(open(target.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!fd.valid()) ThrowFs("open", target);
    if (!ReceiveFileData(c, fd.get(), target)) return false;
    if (fchmod(fd.get(), mode) != 0) ThrowFs("chmod", target);
    if (close(fd.release()) != 0) ThrowFs("close", target);
  } else if (type == "symlink") {
    RemoveNonDir(target);
    const std::string to = e.at("target").get<std::string>();
    if (to.empty() || to.size() > krunbox::kFsMaxPath || to.find('\0') != std::string::npos) {
      errno = EINVAL;
      ThrowFs("symlink", target);
    }
    if (symlink(to.c_str(), target.c_str()) != 0) ThrowFs("symlink", target);
  } else {
    errno = EINVAL;
    ThrowFs("copyIn", target);
  }
  return true;
}

void SendTree(FsConn& c, const std::string& full, const std::string& rel, const struct stat& st) {
  if (full.size() > krunbox::kFsMaxPath) {
    errno = ENAMETOOLONG;
    ThrowFs("copyOut", full.substr(0, 256));
  }
  json entry = {{"path", rel}, {"mode", st.st_mode & 07777}};
  if (S_ISDIR(st.st_mode)) {
    entry["type"] = "directory";
    std::vector<std::string> names;
    {
      DIR* d = opendir(full.c_str());
      if (!d) ThrowFs("scandir", full);
      while (dirent* e = readdir(d))
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) names.push_back(e->d_name);
      closedir(d);
    }
    c.Send(krunbox::kFsEntry, entry.dump(-1, ' ', false, json::error_handler_t::replace));
    for (const std::string& name : names) {
      struct stat child;
      const std::string p = Join(full, name);
      if (lstat(p.c_str(), &child) != 0) {
        if (errno == ENOENT) continue;  // removed meanwhile
        ThrowFs("lstat", p);
      }
      SendTree(c, p, RelJoin(rel, name), child);
    }
  } else if (S_ISREG(st.st_mode)) {
    krunbox::Fd fd(open(full.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    if (!fd.valid()) {
      if (errno == ENOENT) return;
      ThrowFs("open", full);
    }
    struct stat now;
    if (fstat(fd.get(), &now) != 0 || !S_ISREG(now.st_mode)) return;  // swapped meanwhile
    entry["type"] = "file";
    c.Send(krunbox::kFsEntry, entry.dump(-1, ' ', false, json::error_handler_t::replace));
    SendFileData(c, fd.get(), full);
  } else if (S_ISLNK(st.st_mode)) {
    char buf[krunbox::kFsMaxPath];
    const ssize_t n = readlink(full.c_str(), buf, sizeof buf);
    if (n < 0) ThrowFs("readlink", full);
    entry["type"] = "symlink";
    entry["target"] = std::string(buf, static_cast<size_t>(n));
    c.Send(krunbox::kFsEntry, entry.dump(-1, ' ', false, json::error_handler_t::replace));
  }
  // FIFOs, devices and sockets are not copied.
}

class Watcher {
 public:
  Watcher(const std::string& root, bool recursive) : root_(root), recursive_(recursive), fd_(inotify_init1(IN_CLOEXEC | IN_NONBLOCK)) {
    if (!fd_.valid()) ThrowFs("watch", root);
    if (!Add("", false)) ThrowFs("watch", root);
    const size_t slash = root.find_last_of('/');
    base_ = root.substr(slash + 1);
  }
  int fd() const { return fd_.get(); }

  void Pump(FsConn& c) {
    alignas(inotify_event) char buf[64 * 1024];
    for (;;) {
      const ssize_t n = read(fd_.get(), buf, sizeof buf);
      if (n <= 0) return;
      for (char* p = buf; p < buf + n;) {
        const inotify_event* ev = reinterpret_cast<const inotify_event*>(p);
        p += sizeof(inotify_event) + ev->len;
        OnEvent(c, *ev);
      }
    }
  }

 private:
  // Watches `rel` (and, when recursive, the folders in it). `report`: also
  // tell the host about what is already there (a new folder's contents may
  // predate its watch).
  bool Add(const std::string& rel, bool report, FsConn* c = nullptr) {
    const std::string full = Join(root_, rel);
    const int wd = inotify_add_watch(fd_.get(), full.c_str(), kWatchMask | (rel.empty() ? 0 : IN_ONLYDIR | IN_DONT_FOLLOW));
    if (wd < 0) return false;
    dirs_[wd] = rel;
    if (!recursive_) return true;
    DIR* d = opendir(full.c_str());
    if (!d) return true;
    std::vector<std::pair<std::string, bool>> children;
    while (dirent* e = readdir(d)) {
      if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
      children.emplace_back(e->d_name, e->d_type == DT_DIR);
    }
    closedir(d);
    for (const auto& [name, isDir] : children) {
      if (report && c) Event(*c, "rename", RelJoin(rel, name));
      if (isDir) Add(RelJoin(rel, name), report, c);
    }
    return true;
  }

  void Event(FsConn& c, const char* type, const std::string& filename) {
    c.Send(krunbox::kFsEvent, json{{"eventType", type}, {"filename", filename}}.dump(-1, ' ', false, json::error_handler_t::replace));
  }

  void OnEvent(FsConn& c, const inotify_event& ev) {
    if (ev.mask & IN_IGNORED) {
      dirs_.erase(ev.wd);
      return;
    }
    const auto it = dirs_.find(ev.wd);
    if (it == dirs_.end()) return;
    const std::string name = ev.len ? std::string(ev.name) : std::string();
    // A subfolder's own deletion or move is reported by its parent.
    if (name.empty() && !it->second.empty()) return;
    const std::string filename = name.empty() ? base_ : RelJoin(it->second, name);
    Event(c, (ev.mask & (IN_ATTRIB | IN_MODIFY)) ? "change" : "rename", filename);
    if (recursive_ && (ev.mask & IN_ISDIR) && (ev.mask & (IN_CREATE | IN_MOVED_TO))) Add(filename, true, &c);
  }

  std::string root_, base_;
  bool recursive_;
  krunbox::Fd fd_;
  std::map<int, std::string> dirs_;
};

}  // namespace

void CopyIn(FsConn& c, const std::string& path) {
  c.Ok();
  std::vector<std::pair<std::string, mode_t>> dirModes;
  uint8_t type;
  std::string payload;
  try {
    while (c.Read(type, payload)) {
      if (type == krunbox::kFsDone) {
        // Last, deepest first: a read-only folder must not stop its own contents.
        for (auto it = dirModes.rbegin(); it != dirModes.rend(); ++it)
          if (chmod(it->first.c_str(), it->second) != 0) ThrowFs("chmod", it->first);
        return c.Ok();
      }
      if (type != krunbox::kFsEntry) _exit(0);
      if (!ApplyEntry(c, path, json::parse(payload), dirModes)) return c.SkipTo(krunbox::kFsDone);
    }
  } catch (const FsFailure& f) {
    c.Fail(f);
    return c.SkipTo(krunbox::kFsDone);
  } catch (const json::exception&) {
    c.Fail({EINVAL, "copyIn", path});
    return c.SkipTo(krunbox::kFsDone);
  }
  _exit(0);
}

void CopyOut(FsConn& c, const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) ThrowFs("lstat", path);
  SendTree(c, path, "", st);
  c.Send(krunbox::kFsDone, "");
}

void Watch(FsConn& c, const std::string& path, bool recursive) {
  Watcher w(path, recursive);
  c.Ok();
  for (;;) {
    pollfd fds[2] = {{c.fd(), POLLIN, 0}, {w.fd(), POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      _exit(0);
    }
    // The host sends nothing more: readable means it closed the connection.
    if (fds[0].revents) _exit(0);
    if (fds[1].revents) w.Pump(c);
  }
}

}  // namespace agent
