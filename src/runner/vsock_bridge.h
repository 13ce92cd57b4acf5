// Host side of vhost-device-vsock: its Unix socket speaks a small text
// handshake ("CONNECT <port>\n" -> "OK <n>\n") before the byte stream, and
// guest-initiated connections arrive at "<uds>_<port>". The bridge gives the
// qemu backend libkrun's semantics: a plain Unix socket per mapping.
#pragma once

#include <poll.h>

#include <list>
#include <string>
#include <vector>

#include "common/splice.h"
#include "runner/util.h"

namespace krunbox {

class VsockBridge {
 public:
  explicit VsockBridge(std::string udsPath) : uds_(std::move(udsPath)) {}

  // Host connects to `listenPath`; each connection reaches guest `port`.
  void AddHostToGuest(uint32_t port, const std::string& listenPath);
  // Guest connects to host `port`; it reaches the host program's socket.
  void AddGuestToHost(uint32_t port, const std::string& socketPath);
  // The path where vhost-device-vsock delivers guest connections to `port`.
  std::string GuestToHostPath(uint32_t port) const { return uds_ + "_" + std::to_string(port); }

  void AddPollFds(std::vector<pollfd>& fds) const;
  void Handle(const std::vector<pollfd>& fds);
  // Removes the sockets and symlinks it created on the host.
  void Close();

 private:
  struct Listener {
    uint32_t port;
    std::string path;
    Fd fd;
  };
  Fd ConnectGuest(uint32_t port) const;

  std::string uds_;
  std::vector<Listener> listeners_;
  std::vector<std::string> links_;
  std::list<Splice> splices_;
};

}  // namespace krunbox
