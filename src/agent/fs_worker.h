// One worker of the file service: a framed, blocking connection to the host
// and the operations it serves, run chrooted into the sandbox's root as the
// sandbox's user (fs_server.cc sets that up).
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace agent {

// A failed operation, sent to the host as ERROR {errno, syscall, path}.
struct FsFailure {
  int err;
  std::string syscall, path;
};
[[noreturn]] void ThrowFs(const std::string& syscall, const std::string& path);  // with errno

class FsConn {
 public:
  explicit FsConn(int fd) : fd_(fd) {}
  int fd() const { return fd_; }
  // The next frame; false once the host closed the connection or broke the framing.
  bool Read(uint8_t& type, std::string& payload);
  // Ends the worker if the host is gone: nobody is left to answer.
  void Send(uint8_t type, const char* data, size_t size);
  void Send(uint8_t type, const std::string& payload) { Send(type, payload.data(), payload.size()); }
  void Ok(const nlohmann::json& j = nlohmann::json::object());
  void Fail(const FsFailure& f);
  // Skips frames up to and including one of type `end` (after an ERROR
  // sent while the host streams).
  void SkipTo(uint8_t end);

 private:
  int fd_;
};

// Serves one REQUEST; errors are answered as ERROR frames.
void HandleRequest(FsConn& c, const nlohmann::json& req);

// The tree and watch operations (fs_tree.cc).
void CopyIn(FsConn& c, const std::string& path);
void CopyOut(FsConn& c, const std::string& path);
void Watch(FsConn& c, const std::string& path, bool recursive);

// Streams an open file as DATA frames up to its end, then END.
void SendFileData(FsConn& c, int fd, const std::string& path);
// Writes DATA frames into `fd` until END. A write error is reported (ERROR)
// at once and the rest of the stream skipped; returns false then.
bool ReceiveFileData(FsConn& c, int fd, const std::string& path);

}  // namespace agent
